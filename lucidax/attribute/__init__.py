"""lucidax.attribute"""
