"""Offline commands over a data dir: status and gap reports, export, verify, tail, replay server.

They read; they never write the data dir or take a lock a recorder needs.
"""
