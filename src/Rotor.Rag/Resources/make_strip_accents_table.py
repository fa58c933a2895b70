#!/usr/bin/python3
"""Writes strip-accents.tsv: for every code point whose NFD form, with non-spacing marks (Mn) removed, differs from it,
the code point and what it becomes (hex code points, space-separated; empty = removed). Hangul syllables are left out:
Rotor.Rag decomposes them algorithmically. This is the accent stripping of BERT uncased (NFD, drop Mn), tabulated so
the tokenizer gives the same ids whether or not the host process has ICU (Rotor builds with InvariantGlobalization).

Usage: /usr/bin/python3 make_strip_accents_table.py > strip-accents.tsv
"""
import sys
import unicodedata

print(f'# NFD minus Mn, Unicode {unicodedata.unidata_version}; made by make_strip_accents_table.py')
for cp in range(0x110000):
    if 0xAC00 <= cp <= 0xD7A3 or 0xD800 <= cp <= 0xDFFF:
        continue
    ch = chr(cp)
    out = ''.join(c for c in unicodedata.normalize('NFD', ch) if unicodedata.category(c) != 'Mn')
    if out != ch:
        sys.stdout.write(f'{cp:X}\t{" ".join(f"{ord(c):X}" for c in out)}\n')
