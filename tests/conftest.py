"""Session setup: JAX's persistent compilation cache on for the whole test session, as the CLI
and the long jobs turn it on for users: the two xdist workers and a rerun share compiled
programs instead of compiling them again (a warm cache takes the suite from ~9 to ~3.5 min
on 2 cores). ``LUCIDAX_COMPILE_CACHE`` moves it or turns it off (``0``), as for users."""

from lucidax._compile_cache import enable_compile_cache


def pytest_configure(config):
    enable_compile_cache()
