"""Built-in network and chat plugins; each registers through an entry point like a third-party one."""
