#!/bin/bash
# Regenerates fuzz/corpus/artefact/ from scratch with independent tools
# (wimlib-imagex, sfdisk, sgdisk, mkfs.fat, mtools, genisoimage). The seeds
# are small and stored sparse (see tests/fuzz/kit.rs for the format).
set -euo pipefail
out=$(cd "$(dirname "$0")" && pwd)/corpus/artefact
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT; cd "$t"
mkdir -p tree/Windows/System32 "tree/日本語/Ελληνικά/deep/a/b/c" tree/empty
echo hello > tree/Windows/System32/a.txt
: > tree/zero.bin
python3 -c "import random; random.seed(1); open('tree/rand.bin','wb').write(bytes(random.randrange(256) for _ in range(2000)))"
python3 -c "open('tree/text.inf','w').write('driver line\\n' * 300)"
ln tree/text.inf tree/hardlink.inf
echo x > "tree/日本語/Ελληνικά/deep/a/b/c/naïve.txt"
for c in LZX XPRESS LZMS none; do wimlib-imagex capture tree "tiny-$c.wim" tiny --compress=$c >/dev/null; done
wimlib-imagex capture tree tiny-solid.esd tiny --solid >/dev/null
truncate -s 40M part && mkfs.fat -F32 -n TINY -S 512 -s 1 part >/dev/null
mcopy -s -i part tree/Windows tree/text.inf ::/
truncate -s 40M mbr.img && printf 'label: dos\n2048,,c,*\n' | sfdisk -q mbr.img
truncate -s 40M gpt.img && sgdisk -q -n 1:2048:0 -t 1:ef00 gpt.img >/dev/null
for d in mbr.img gpt.img; do dd if=part of=$d bs=512 seek=2048 conv=notrunc status=none; done
genisoimage -quiet -udf -J -V TINYISO -o udf.iso tree
genisoimage -quiet -J -V TINYISO -o joliet.iso tree
for f in *.wim *.esd *.img *.iso; do
  python3 - "$f" "$out/$f.sparse" <<'P'
import struct, sys
data = open(sys.argv[1], 'rb').read()
out = bytearray(b'MBSPARSE1\n') + struct.pack('<Q', len(data))
i = 0
while i < len(data):
    if data[i] == 0:
        i += 1; continue
    start, zeros = i, 0
    while i < len(data) and zeros < 256:
        zeros = zeros + 1 if data[i] == 0 else 0
        i += 1
    end = i - zeros
    out += struct.pack('<QI', start, end - start) + data[start:end]
open(sys.argv[2], 'wb').write(out)
P
done
ls -la "$out"
