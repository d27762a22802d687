"""Reads answered from memory until the next commit: the commit check and what is kept
(`memory`), and whole responses kept in front of FastAPI (`responses`)."""
