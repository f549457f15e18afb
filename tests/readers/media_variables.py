#!/usr/bin/env python3
"""An independent reader of ConfigMgr media variables (SMS/data/Variables.dat).

Written for mediabuild's tests from the published algorithm of the public
readers of real media -- PXEThief's media variable decryption (MWR CyberSec,
`decrypt_media_file`), pxethiefy, and CMvarDecrypt (which calls CryptDecrypt
with Final=TRUE) -- not from mediabuild's writer. It reads the file both ways
and fails (exit 1) unless both succeed and agree:

* PXEThief's way: drop the 24-byte header and the last 8 bytes, floor to a
  multiple of 16, AES-128-CBC decrypt with a zero IV (no unpadding), decode
  UTF-16LE, cut at the LAST U+0000, keep printable characters, then parse the
  XML strictly (xml.etree) and read `.//var[@name=...]`;
* CryptDecrypt's way: decrypt exactly the header's ciphertext length, strip a
  valid PKCS#7 padding (Final=TRUE fails otherwise), compare with the header's
  plain length.

The key is CryptDeriveKey(CALG_SHA1 -> CALG_AES_128) of the UTF-16LE password
(the fixed public password when the media have none). When the variables hold
_SMSTSMediaPFX, it is opened as PKCS#12 with the first 31 characters of
_SMSMediaGuid, as those readers do. Certificate variables (hex DER, `;`
between several) are parsed as X.509.

usage: media_variables.py FILE [--password PW | --password-file F]
prints JSON: {"header": {...}, "vars": {...}, "pfx": {...}, "certificates": {...}}
"""
import hashlib
import json
import struct
import sys
import xml.etree.ElementTree as ET

from cryptography import x509
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.serialization import pkcs12

DEFAULT_PASSWORD = "{BAC6E688-DE21-4ABE-B7FB-C9F54E6DB664}"
CERT_VARS = ("_SMSTSRootCACerts", "_SMSTSSiteSigningCertificate")


def fail(msg):
    print(f"media_variables.py: {msg}", file=sys.stderr)
    sys.exit(1)


def derive_key(password):
    digest = hashlib.sha1(password.encode("utf-16-le")).digest()
    inner = bytes(b ^ 0x36 for b in digest) + b"\x36" * (64 - len(digest))
    outer = bytes(b ^ 0x5C for b in digest) + b"\x5c" * (64 - len(digest))
    return (hashlib.sha1(inner).digest() + hashlib.sha1(outer).digest())[:16]


def aes_cbc_decrypt(key, data):
    d = Cipher(algorithms.AES(key), modes.CBC(b"\0" * 16)).decryptor()
    return d.update(data) + d.finalize()


def vars_of(root):
    if root.tag != "MediaVarList":
        fail(f"root element is <{root.tag}>, not <MediaVarList>")
    out = {}
    for v in root.findall(".//var"):
        out[v.get("name")] = v.text or ""
    return out


def main():
    args = sys.argv[1:]
    if not args:
        fail("usage: media_variables.py FILE [--password PW | --password-file F]")
    raw = open(args[0], "rb").read()
    password = DEFAULT_PASSWORD
    if "--password" in args:
        password = args[args.index("--password") + 1]
    if "--password-file" in args:
        password = open(args[args.index("--password-file") + 1], encoding="utf-8").read().strip()

    magic, hlen, plain_len, ct_len, alg, zero = struct.unpack("<6I", raw[:24])
    if magic != 0xECED0000 or hlen != 20 or alg != 0x660E or zero != 0:
        fail(f"bad header {raw[:24].hex()}")
    key = derive_key(password)

    # PXEThief's way.
    body = raw[24:-8]
    body = body[: len(body) // 16 * 16]
    text = aes_cbc_decrypt(key, body).decode("utf-16-le")
    if "\x00" not in text:
        fail("no U+0000 in the decrypted text: readers that cut at the last NUL keep the padding")
    text = text[: text.rfind("\x00")]
    text = "".join(c for c in text if c.isprintable())
    try:
        root = ET.fromstring(text.encode("utf-16-le"))
    except ET.ParseError as e:
        fail(f"XML parse failed the way PXEThief parses: {e}")
    pxethief_vars = vars_of(root)

    # CryptDecrypt(Final=TRUE)'s way.
    if 24 + ct_len > len(raw) or ct_len % 16:
        fail(f"ciphertext length {ct_len} does not fit the file ({len(raw)} bytes)")
    padded = aes_cbc_decrypt(key, raw[24 : 24 + ct_len])
    pad = padded[-1]
    if not 1 <= pad <= 16 or padded[-pad:] != bytes([pad]) * pad:
        fail("invalid PKCS#7 padding (CryptDecrypt with Final=TRUE would fail)")
    plain = padded[:-pad]
    if len(plain) != plain_len:
        fail(f"header plain length {plain_len} != decrypted {len(plain)}")
    strict = plain.decode("utf-16-le")
    terminated = strict.endswith("\x00")
    strict_vars = vars_of(ET.fromstring(strict.rstrip("\x00").encode("utf-16-le")))
    if strict_vars != pxethief_vars:
        fail("the two ways of reading disagree")

    out = {
        "header": {
            "plain_length": plain_len,
            "ciphertext_length": ct_len,
            "trailer_length": len(raw) - 24 - ct_len,
            "nul_terminated": terminated,
            "xml_declaration": strict.startswith('<?xml version="1.0" encoding="utf-16"?>'),
        },
        "vars": pxethief_vars,
    }
    if "_SMSTSMediaPFX" in pxethief_vars:
        guid = pxethief_vars.get("_SMSMediaGuid", "")
        try:
            k, cert, extra = pkcs12.load_key_and_certificates(
                bytes.fromhex(pxethief_vars["_SMSTSMediaPFX"]), guid[:31].encode()
            )
        except Exception as e:  # noqa: BLE001 -- any failure is the finding
            fail(f"_SMSTSMediaPFX does not open with _SMSMediaGuid[:31]: {e}")
        out["pfx"] = {"subject": cert.subject.rfc4514_string(), "has_key": k is not None}
    certs = {}
    for name in CERT_VARS:
        if name in pxethief_vars:
            certs[name] = [
                x509.load_der_x509_certificate(bytes.fromhex(h)).subject.rfc4514_string()
                for h in pxethief_vars[name].split(";")
            ]
    out["certificates"] = certs
    print(json.dumps(out, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
