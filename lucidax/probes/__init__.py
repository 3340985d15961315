"""lucidax.probes"""
