"""Institutions and findings: the system of record the ratings are made from (`storage`), and
getting files, uploads and single findings into it, all or nothing (`importing`)."""
