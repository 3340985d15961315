"""lucidax.visualize"""
