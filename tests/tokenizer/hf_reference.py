#!/usr/bin/env python3
"""beaconrt's tokenizer.json backend against the real `tokenizers` library (run by hf_reference.sh).

usage: hf_reference.py BRT_TOKENIZE WORK NAME=DIR [NAME=DIR ...] [--inp NAME=FILE.inp ...] [--spm DIR]

The converted files are checked first: `tokenizers` on NAME's folder must give the ids of
llama.cpp's FILE.out for the strings of FILE.inp. Then for each tokenizer folder (and the variants
made below): a corpus of awkward texts (all the .inp strings, and the texts below) encoded by `tokenizers` (encode(text, add_special_tokens=
False)) and by beaconrt (tests/tools/brt_tokenize: the runtime's loader, encode, decode, join);
every id list must be equal, beaconrt's decode must equal `tokenizers`' decode(ids,
skip_special_tokens=True) byte for byte, and for byte-level tokenizers the per-token stream bytes
must join back to the text wherever `tokenizers` round-trips it. Invalid UTF-8 byte strings must be
refused naming the offset of the first bad byte. --spm DIR (a folder with the Llama-2
tokenizer.model) compares the sentencepiece backend with `tokenizers` on the llama-spm file too.
Prints the first differences; exit 1 on any.
"""
import json
import os
import random
import subprocess
import sys

from tokenizers import Tokenizer

MAX_SHOWN = 8


def own_texts():
    t = [
        "", " ", "  ", "\n", "\r\n", "\t", "\r\n\r\n", " \n \n", "a", "A", "1",
        "Hello world", " Hello world", "  Hello  world  ", "Hello world ", "Hello\nworld", "Hello\r\nworld\r\n",
        "Hello\tworld\t\tagain", "a  b   c    d     e", "x\n\n\ny", "trailing spaces   ", "\u00a0nbsp\u00a0",
        # mixed scripts
        "Hello \u043c\u0438\u0440 \u4e16\u754c \u3053\u3093\u306b\u3061\u306f \uc548\ub155\ud558\uc138\uc694 "
        "\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd \u0928\u092e\u0938\u094d\u0924\u0947 "
        "\u1230\u120b\u121d \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35 \u10d2\u10d0\u10db\u10d0\u10e0\u10ef\u10dd\u10d1\u10d0",
        "\u0391\u03b8\u03ae\u03bd\u03b1 \u03a3\u03af\u03c3\u03c5\u03c6\u03bf\u03c2 \u0130stanbul \u00df \u1e9e \u01c5",
        # emoji, ZWJ sequences, flags, skin tones, variation selectors
        "\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466 family",
        "\U0001F3F3\ufe0f\u200d\U0001F308 and \U0001F1EB\U0001F1F7 \U0001F1EF\U0001F1F5",
        "\U0001F44D\U0001F3FD \U0001F917\U0001F917\U0001F917 \u2764\ufe0f \u263a",
        "emoji\U0001F600in\U0001F680words",
        # combining marks that NFC composes or reorders, compatibility characters
        "e\u0301 \u00e9 A\u030a \u00c5 \u212b \u2126 o\u0308\u0304 q\u0323\u0307 q\u0307\u0323",
        "\u1100\u1161\u11a8 \uac01 \u0915\u093c \u0958 \ufb01ligature \u2460 \uff21\uff22 \u00bd x\u00b2",
        "a\u0300\u0301\u0302\u0303\u0304\u0305\u0306\u0307\u0308\u0309 Zalgo\u0336\u0337\u0338",
        "\u0041\u030a\u0042 \u0063\u0327\u0301 \u1e69 s\u0323\u0307 s\u0307\u0323",
        # digits
        "1234567890", "3.14159265358979", "1,000,000.00", "12 345 678", "\u0661\u0662\u0663 \u00b2\u00b3 \u2167",
        "0x1F 0b1011 1e-10 -42 +7", "year 2024, page 99-100", "9" * 100,
        # contractions and apostrophes
        "I'm you're he'll they've it's we'd I'D WE'LL 'S 's \u017f", "don't  'quoted' \u2019curly\u2019",
        # special tokens inside text
        "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
        "[MASK]", "a  [MASK]  b", "\t[MASK]\n", "x[MASK]y", "<sep>   next", "<sep>\n\n", "say hello world",
        "sayhello hello_ hello! HELLO Hello.", "ab abc ab, xab ab\u0301 ab", "\u00c9cole \u00e9cole \u00c9COLE",
        "the end. THE END! the  end", "  <|im_start|>  x  ", "1234 12345 \u2581 end. Why? yes!  no",
        "<|endoftext|>x<|endoftext|><|endoftext|>", "<s>hello</s> <s> </s>", "<|begin_of_text|>Hi<|eot_id|>",
        "< |im_start| > <|im_start <im_start|>", "text<|im_end|>", " <|im_end|> ",
        # code
        "def f(x):\n    return x ** 2  # square\n\tif a != b:\n\t\tpass\n",
        "for (int i = 0; i < n; i++) { a[i] = b[i] * 2; }\n// done",
        "{\"key\": [1, 2.5, null, true], \"url\": \"https://example.com/a?b=c&d=e\"}",
        "<html><body class=\"x\">&amp; &lt;tag&gt;</body></html>",
        # control and odd whitespace characters
        "\x00nul\x00", "\x1f\x1e\x1d\x1c unit", "a\u0085b", "a\u200bb\u200cc\u200dd", "a\u2028b\u2029c",
        "a\u3000b\u2003c\u2009d\u202fe", "\x7f\x80", "\ufeffbom", "\ufffd replacement",
        # very long words and runs
        "a" * 3000, "Pneumonoultramicroscopicsilicovolcanoconiosis" * 40, "-" * 1000, "=" * 257,
        " " * 500 + "x", "\n" * 300, "ab" * 1500, "\u4e2d\u6587" * 800, "\U0001F600" * 300,
        "x" + " " * 64 + "y" + "\t" * 33,
    ]
    return t


def random_texts(n, seed=1234):
    """Seeded random strings over characters from long-assigned blocks (Unicode <= 12), so
    PCRE2's and utf8proc's tables agree with the library's."""
    rng = random.Random(seed)
    pools = [
        [chr(c) for c in range(0x20, 0x7F)] * 4,
        [" ", "  ", "\n", "\t", "\r\n", "\u00a0", "\u3000"] * 6,
        [chr(c) for c in range(0xC0, 0x250)],
        [chr(c) for c in range(0x300, 0x370)],  # combining diacritics
        [chr(c) for c in range(0x391, 0x3CA)],
        [chr(c) for c in range(0x410, 0x450)],
        [chr(c) for c in range(0x5D0, 0x5EB)] + [chr(c) for c in range(0x621, 0x64B)],
        [chr(c) for c in range(0x905, 0x940)],
        [chr(c) for c in range(0x4E00, 0x4F00)],
        [chr(c) for c in range(0x3041, 0x3097)],
        [chr(c) for c in range(0xAC00, 0xAD00)] + [chr(c) for c in range(0x1100, 0x1113)] +
        [chr(c) for c in range(0x1161, 0x1176)],
        [chr(c) for c in range(0x1F600, 0x1F650)] + ["\u200d", "\ufe0f", "\U0001F3FB"],
        [chr(c) for c in range(0x30, 0x3A)] + [chr(c) for c in range(0x660, 0x66A)] + ["\u00b2", "\u2160"],
        ["'s", "'t", "'re", "'LL", "<|im_start|>", "<|endoftext|>", "<s>", "</s>", "\u2581", "\u0120"],
    ]
    out = []
    for _ in range(n):
        k = rng.randint(1, 60)
        s = []
        for _ in range(k):
            s.append(rng.choice(rng.choice(pools)))
        out.append("".join(s))
    return out


def variants(folders, work):
    """Tokenizer files with the options real vocabularies do not exercise, made from the converted
    ones (GPT-2's and Llama's vocabularies): every supported normalizer, split behaviour, added
    token flag, merges form, decoder and post-processor, each judged by `tokenizers` itself."""
    base = dict(folders)
    out = []

    def load(name):
        with open(os.path.join(base[name], "tokenizer.json"), encoding="utf-8") as f:
            return json.load(f)

    def write(name, tj, config=None):
        d = os.path.join(work, "variant-" + name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tj, f, ensure_ascii=False)
        cfg = os.path.join(d, "tokenizer_config.json")
        if config is None:
            if os.path.exists(cfg):
                os.remove(cfg)
        else:
            with open(cfg, "w") as f:
                json.dump(config, f)
        out.append((name, d))

    def added(content, i, vocab=None, **kw):
        # a content the vocabulary has keeps the vocabulary's id, as `tokenizers` gives it
        a = {"id": (vocab or {}).get(content, i), "content": content, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": False}
        a.update(kw)
        return a

    def byte_level(prefix, rx):
        return {"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": True, "use_regex": rx}

    if "gpt-2" in base:
        g = load("gpt-2")
        n = len(g["model"]["vocab"])
        tj = json.loads(json.dumps(g))
        tj["normalizer"] = {"type": "Sequence", "normalizers": [
            {"type": "NFKC"}, {"type": "Lowercase"},
            {"type": "Replace", "pattern": {"Regex": "[0-9]{4,}"}, "content": "<num>"},
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": "_"}]}
        tj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "\\s*[.!?]\\s*"}, "behavior": "MergedWithPrevious", "invert": False},
            {"type": "Digits", "individual_digits": False}, byte_level(True, True)]}
        tj["added_tokens"] = g["added_tokens"] + [
            added("[MASK]", n, lstrip=True, special=True), added("<sep>", n + 1, rstrip=True),
            added("hello", n + 2, g["model"]["vocab"], single_word=True, normalized=True),
            added("\u00c9cole", n + 2, normalized=True),
            added("<|im_start|>", n + 3, special=True, lstrip=True, rstrip=True),
            added("ab", n + 4, g["model"]["vocab"], single_word=True), added("the end", n + 4, normalized=True)]
        tj["model"]["merges"] = [m.split(" ") for m in g["model"]["merges"]]  # the [a, b] form
        write("gpt2-options", tj, {"bos_token": "<|endoftext|>", "eos_token": {"content": "<|endoftext|>"},
                                   "add_bos_token": True})
        for beh in ("Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"):
            for inv in (False, True):
                tj = json.loads(json.dumps(g))
                tj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
                    {"type": "Split", "pattern": {"Regex": " ?\\p{L}+|\\s+(?!\\S)"}, "behavior": beh, "invert": inv},
                    {"type": "Split", "pattern": {"String": "e"}, "behavior": beh, "invert": not inv},
                    byte_level(False, False)]}
                tj["decoder"] = None if beh == "Removed" else tj["decoder"]  # no decoder: joined with spaces
                write("split-%s%s" % (beh, "-inv" if inv else ""), tj)
        tj = json.loads(json.dumps(g))
        tj["normalizer"] = {"type": "NFD"}
        tj["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                                                    byte_level(False, True)]}
        tj["model"]["ignore_merges"] = True
        write("gpt2-nfd-digits-ignore-merges", tj)
    if "llama-bpe" in base:
        tj = load("llama-bpe")
        tj["post_processor"] = {"type": "Sequence", "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {"type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [128000],
                                                      "tokens": ["<|begin_of_text|>"]}}}]}
        tj["normalizer"] = {"type": "NFKD"}
        write("llama3-template-nfkd", tj)  # no tokenizer_config.json: the template adds BOS
    if "llama-spm" in base:
        s = load("llama-spm")
        for fuse in (True, False):
            tj = json.loads(json.dumps(s))
            tj["model"]["byte_fallback"] = False
            tj["model"]["fuse_unk"] = fuse
            tj["normalizer"]["normalizers"].insert(0, {"type": "NFKC"})
            tj["added_tokens"].append(added("\u2581\u2581", 32000, s["model"]["vocab"], normalized=True))
            tj["added_tokens"].append(added("<unk>", 32000, s["model"]["vocab"], special=True))
            write("spm-unk-fuse-%s" % str(fuse).lower(), tj, {"bos_token": "<s>", "add_bos_token": True})
        tj = json.loads(json.dumps(s))
        tj["decoder"]["decoders"] = [
            {"type": "Replace", "pattern": {"Regex": "\u2581+"}, "content": " "}, {"type": "ByteFallback"},
            {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 2, "stop": 1}]
        write("spm-decoders", tj)
    return out


INVALID = [
    (b"\xff", 0), (b"abc\x80def", 3), (b"\xc3", 0), (b"ok \xc3(", 3), (b"\xed\xa0\x80", 0),
    (b"\xf4\x90\x80\x80", 0), (b"\xc0\xaf", 0), (b"\xe0\x80\xaf", 0), (b"fine \xe2\x82", 5),
    ("<|im_start|>x".encode() + b"\xfe", 13), (b"a" * 1000 + b"\x80", 1000),
]


def read_inp(path):
    with open(path, encoding="utf-8") as f:
        return f.read().split("\n__ggml_vocab_test__\n")


def run_ours(tool, folder, texts, work, name):
    cin = os.path.join(work, name + ".in.json")
    cout = os.path.join(work, name + ".out.json")
    with open(cin, "w") as f:
        json.dump({"texts": [t.hex() for t in texts]}, f)
    r = subprocess.run([tool, folder, "--json-corpus", cin, "--out", cout], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit("brt_tokenize %s failed (%d): %s" % (folder, r.returncode, r.stderr.strip()))
    with open(cout) as f:
        return json.load(f)


def show(b):
    s = b.decode("utf-8", "backslashreplace")
    return repr(s if len(s) < 120 else s[:117] + "...")


def main():
    args = sys.argv[1:]
    tool, work = args[0], args[1]
    folders, inps, spm = [], [], None
    i = 2
    while i < len(args):
        if args[i] == "--inp":
            inps.append(args[i + 1].partition("="))
            i += 2
        elif args[i] == "--spm":
            spm = args[i + 1]
            i += 2
        else:
            name, _, d = args[i].partition("=")
            folders.append((name, d))
            i += 1
    texts = []
    bad = 0
    for name, _, p in inps:
        strings = read_inp(p)
        texts += strings
        # llama.cpp's own ids for its strings: `tokenizers` on the converted file must give them
        # (this checks the conversion, so that the comparison below is about a faithful file)
        folder = dict(folders).get(name)
        if folder and os.path.exists(p[:-4] + ".out"):
            tk = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
            with open(p[:-4] + ".out") as f:
                lines = f.read().split("\n")
            pairs = list(zip(strings, lines))
            wrong = [k for k, (t, line) in enumerate(pairs)
                     if tk.encode(t, add_special_tokens=False).ids != [int(x) for x in line.split()]]
            print("%-30s llama.cpp's %d test strings: tokenizers on the converted file %s" %
                  (name, len(pairs), "gives llama.cpp's ids" if not wrong else
                   "DIFFERS on %d (first: %s)" % (len(wrong), show(strings[wrong[0]].encode()))))
            bad += len(wrong)
    texts += own_texts() + random_texts(1000)
    seen, uniq = set(), []
    for t in texts:
        if t not in seen:
            seen.add(t)
            uniq.append(t)
    corpus = [t.encode("utf-8") for t in uniq] + [b for b, _ in INVALID]
    n_valid = len(uniq)
    for name, folder in folders + variants(folders, work):
        tk = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
        tj = json.load(open(os.path.join(folder, "tokenizer.json"), encoding="utf-8"))
        byte_level = "ByteLevel" in json.dumps(tj.get("pre_tokenizer"))
        specials = {a["id"] for a in tj.get("added_tokens", []) if a.get("special")}
        ours = run_ours(tool, folder, corpus, work, name)
        res = ours["results"]
        diffs = []
        # BOS: what tokenizers' post-processor adds (with tokenizer_config.json's add_bos_token,
        # transformers' rule) against brt_tokenizer_adds_bos / bos_id
        cfgp = os.path.join(folder, "tokenizer_config.json")
        cfg = json.load(open(cfgp)) if os.path.exists(cfgp) else {}
        first = tk.encode("x", add_special_tokens=True).ids
        lib_bos = first[0] if len(first) > 1 else -1
        if "add_bos_token" in cfg:
            want_adds = int(bool(cfg["add_bos_token"]))
        else:
            want_adds = int(lib_bos >= 0)
        if ours["adds_bos"] != want_adds or (want_adds and lib_bos >= 0 and ours["bos"] != lib_bos):
            diffs.append("BOS: ours adds_bos %d bos %d, want adds_bos %d (tokenizers' template puts %d first)" %
                         (ours["adds_bos"], ours["bos"], want_adds, lib_bos))
        n_ids = panics = 0
        for k in range(n_valid):
            text = uniq[k]
            want = tk.encode(text, add_special_tokens=False).ids
            got = res[k]
            n_ids += len(want)
            if "ids" not in got:
                diffs.append("text %d %s: ours failed: %s" % (k, show(corpus[k]), got.get("error")))
                continue
            if got["ids"] != want:
                j = next((x for x in range(min(len(want), len(got["ids"]))) if want[x] != got["ids"][x]),
                         min(len(want), len(got["ids"])))
                diffs.append("text %d %s: ids differ at %d: tokenizers %s, ours %s" %
                             (k, show(corpus[k]), j, want[max(0, j - 3):j + 5], got["ids"][max(0, j - 3):j + 5]))
                continue
            try:
                dec = tk.decode(want, skip_special_tokens=True).encode("utf-8")
            except BaseException:  # pyo3's PanicException: the library's Strip with stop > 0 on ""
                panics += 1
                continue
            if bytes.fromhex(got.get("decoded", "")) != dec:
                diffs.append("text %d %s: decode: tokenizers %s, ours %s" %
                             (k, show(corpus[k]), show(dec), show(bytes.fromhex(got.get("decoded", "")))))
                continue
            if byte_level and not (set(want) & specials) and tk.decode(want, skip_special_tokens=False) == text:
                if bytes.fromhex(got.get("joined", "")) != corpus[k]:
                    diffs.append("text %d %s: joined token bytes %s" %
                                 (k, show(corpus[k]), show(bytes.fromhex(got.get("joined", "")))))
        for (b, off), got in zip(INVALID, res[n_valid:]):
            if got.get("status") != "invalid_request" or ("byte offset %d " % off) not in got.get("error", ""):
                diffs.append("invalid UTF-8 %r: want refused at byte offset %d, got %s" % (b[:40], off, got))
        print("%-30s %4d texts (%6d ids) + %d invalid: %s; load %.2fs, encode+decode %.2fs%s" %
              (name, n_valid, n_ids, len(INVALID), "all equal" if not diffs else "%d DIFFER" % len(diffs),
               ours["load_seconds"], ours["encode_seconds"],
               " (%d decodes not compared: the library panics)" % panics if panics else ""))
        for d in diffs[:MAX_SHOWN]:
            print("   " + d)
        bad += len(diffs)
    if spm:
        # the sentencepiece backend (bit-exact to sentencepiece) beside `tokenizers` on the converted
        # llama-spm file: they agree except where the two reference libraries themselves differ
        name = dict(folders).get("llama-spm")
        tk = Tokenizer.from_file(os.path.join(name, "tokenizer.json"))
        ours = run_ours(tool, spm, [t.encode() for t in uniq], work, "spm")
        same = sum(1 for k, t in enumerate(uniq)
                   if ours["results"][k].get("ids") == tk.encode(t, add_special_tokens=False).ids)
        plain = [k for k, t in enumerate(uniq) if t and not t.startswith(" ") and "<s>" not in t and "</s>" not in t
                 and t.isascii() and " " * 2 not in t and "\n" not in t and "\t" not in t]
        plain_bad = [k for k in plain if ours["results"][k].get("ids") != tk.encode(uniq[k], add_special_tokens=False).ids]
        print("spm (tokenizer.model)          sentencepiece backend vs tokenizers (llama-spm): %d of %d texts equal; plain ASCII texts %d of %d"
              % (same, len(uniq), len(plain) - len(plain_bad), len(plain)))
        for k in plain_bad[:MAX_SHOWN]:
            print("   plain text %d %s differs" % (k, show(uniq[k].encode())))
        bad += len(plain_bad)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
