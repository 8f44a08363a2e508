"""Built-in network and chat plugins, registered through entry points like third-party ones."""
