"""Errors the person can fix; the CLI prints them as they are and exits with status 2."""


class BadInput(Exception):
    pass
