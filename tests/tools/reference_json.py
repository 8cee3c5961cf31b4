#!/usr/bin/env python3
"""Helpers for the TinyStories reference.json files (Python stdlib only).

    reference_json.py entries REF.json
        the names of the entries that have input_ids and greedy_new_ids, one a line
    reference_json.py check-gen GEN.json REF.json ENTRY
        `beaconrt generate --json` output vs the entry: generated_ids identical to greedy_new_ids, and
        the "text" field identical to greedy_text up to the leading-space rule below
    reference_json.py text REF.json ENTRY OUT
        write the entry's prompt text to OUT (UTF-8, exactly, no newline added)
    reference_json.py first-piece REF.json ENTRY
        the piece of the first greedy token, from the entry's top-k list (prints it)

The leading-space rule. reference.json's greedy_text is sentencepiece `decode(greedy_new_ids)`: decoding
treats the ids as a whole text, and with add_dummy_prefix the leading U+2581 of the first piece is the
dummy prefix, so decode drops it ("▁Once" -> "Once"). beaconrt generate prints the continuation as it
reads after the prompt (pieces joined, U+2581 -> ' ', no first-piece rule), so that space is kept: the
continuation of "...a big smile." is " The bird ..." there and "The bird ..." in greedy_text. So when the
first generated piece starts with U+2581, generate's text must be ' ' + greedy_text, else exactly
greedy_text. The first piece is read from the entry's own top-k list ([id, logit, piece], whose first id
is the greedy token), not guessed from the text. (This model also removes extra whitespace, so decode
drops the leading U+2581 of every piece while its output is still empty; a bare "▁" followed by "▁x"
would lose two spaces. No entry starts that way: their first pieces are "▁Once", "<0x0A>", "▁The" and
"▁" followed by "inday".)
"""
import json
import sys

SPACE = "\u2581"


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def topk(entry):
    for k in ("top5_last_logits", "top10_last_logits"):
        if k in entry:
            return entry[k]
    raise SystemExit("reference_json: entry has no top-k list")


def first_piece(entry):
    t = topk(entry)
    if int(t[0][0]) != int(entry["greedy_new_ids"][0]):
        raise SystemExit("reference_json: top-1 id %s is not the first greedy id %s"
                         % (t[0][0], entry["greedy_new_ids"][0]))
    return t[0][2]


def main(argv):
    if len(argv) == 3 and argv[1] == "entries":
        for name, e in load(argv[2]).items():
            if isinstance(e, dict) and "input_ids" in e and "greedy_new_ids" in e:
                print(name)
        return 0
    if len(argv) == 5 and argv[1] == "text":
        with open(argv[4], "w", encoding="utf-8", newline="") as f:
            f.write(load(argv[2])[argv[3]]["text"])
        return 0
    if len(argv) == 4 and argv[1] == "first-piece":
        print(first_piece(load(argv[2])[argv[3]]))
        return 0
    if len(argv) == 5 and argv[1] == "check-gen":
        gen = load(argv[2])
        entry = load(argv[3])[argv[4]]
        ok = True
        if gen.get("generated_ids") != entry["greedy_new_ids"]:
            print("%s: generated ids DIFFERENT\n  got:    %s\n  expect: %s"
                  % (argv[4], gen.get("generated_ids"), entry["greedy_new_ids"]))
            ok = False
        else:
            print("%s: %d generated ids identical" % (argv[4], len(entry["greedy_new_ids"])))
        piece = first_piece(entry)
        want = (" " if piece.startswith(SPACE) else "") + entry["greedy_text"]
        got = gen.get("text")
        if got != want:
            print("%s: text DIFFERENT (first piece %r)\n  got:    %r\n  expect: %r" % (argv[4], piece, got, want))
            ok = False
        else:
            print("%s: text identical to greedy_text%s: %r" % (
                argv[4], " after the leading space decode drops" if piece.startswith(SPACE) else "",
                got[:60] + ("..." if len(got) > 60 else "")))
        return 0 if ok else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
