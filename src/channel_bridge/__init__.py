"""channel-bridge: a durable webhook bridge between AXP Custom Messaging and Genesys Nexus Async."""

__version__ = "0.1.0"
