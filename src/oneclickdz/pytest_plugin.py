"""The merchant's testing kit: a pytest plugin with the fixture `oneclickdz_service`.

Registered through the `pytest11` entry point; it imports the service only when the fixture is
used, so installing the SDK without the `server` extra leaves pytest untouched.
"""
