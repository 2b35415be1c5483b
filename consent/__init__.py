"""The consent registry and decide(), the one place consent decisions are made."""
