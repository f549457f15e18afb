#!/usr/bin/env python3
"""Independent test vector for Variables.dat (run: python3 tests/vectors/variables_dat.py).

Written from reference/configmgr.md with Python's `cryptography`, not from our
Rust code: CryptDeriveKey(SHA-1) -> AES-128 key, AES-128-CBC with a zero IV and
PKCS#7 padding, the plaintext ending in a UTF-16 NUL (counted in the header's
plain length), the 24-byte header and 16 trailing zero bytes (docs/configmgr.md
says why 16).
"""
import hashlib, struct, pathlib
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives import padding

password = "Pa55word!Media"
xml = '<?xml version="1.0" encoding="utf-16"?><MediaVarList><var name="A">1</var></MediaVarList>'
plain = xml.encode("utf-16-le") + b"\0\0"

d = hashlib.sha1(password.encode("utf-16-le")).digest()
b1 = bytes(x ^ 0x36 for x in d) + b"\x36" * (64 - len(d))
b2 = bytes(x ^ 0x5C for x in d) + b"\x5c" * (64 - len(d))
key = (hashlib.sha1(b1).digest() + hashlib.sha1(b2).digest())[:16]

padder = padding.PKCS7(128).padder()
padded = padder.update(plain) + padder.finalize()
enc = Cipher(algorithms.AES(key), modes.CBC(b"\0" * 16)).encryptor()
ct = enc.update(padded) + enc.finalize()
out = struct.pack("<6I", 0xECED0000, 20, len(plain), len(ct), 0x660E, 0) + ct + b"\0" * 16

here = pathlib.Path(__file__).parent
(here / "variables_dat.hex").write_text(out.hex() + "\n")
(here / "variables_key.hex").write_text(key.hex() + "\n")
print(key.hex())
