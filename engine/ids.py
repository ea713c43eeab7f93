"""OpenAI-style prefixed object ids (asst_…, thread_…, file-…)."""

import secrets
import string

ALPHABET = string.digits + string.ascii_letters


def new_id(prefix: str, length: int = 24) -> str:
    # One read of the system's randomness per id (not one per character), in base 62.
    number = int.from_bytes(secrets.token_bytes(length), "big")
    digits = []
    for _ in range(length):
        number, digit = divmod(number, len(ALPHABET))
        digits.append(ALPHABET[digit])
    return prefix + "".join(digits)
