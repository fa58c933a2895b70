#!/usr/bin/env python3
"""Reference token ids for Rotor's tokenizer tests.

Writes, into OUT_DIR:
  tokenizer_strings.json   the test strings (about 300, deterministic)
  llama3_tiktoken.json     ids from tiktoken for the Llama 3 tokenizer.model: "special" with allowed_special="all"
                           (special-token text becomes its id), "plain" with disallowed_special=() (it stays text)
  bpe_small.tokenizer.json a small byte-level BPE tokenizer (Llama 3 pre-tokenizer, added special tokens) trained
                           with Hugging Face `tokenizers` on the test strings and the repository's docs
  bpe_small.json           ids from `tokenizers` for it (add_special_tokens=False; added tokens are always parsed)
  spm_small.model          a small SentencePiece BPE model trained with Llama 2's settings (byte fallback, identity
                           normalization, no whitespace folding, split digits) on the same text
  spm_small.json           ids from `sentencepiece` for it (no BOS)

usage: make_tokenizer_reference.py LLAMA3_TOKENIZER_MODEL REPO_ROOT OUT_DIR
       make_tokenizer_reference.py --llama2c HARNESS TOK_BIN VOCAB_SIZE OUT_DIR
       make_tokenizer_reference.py --spm REPO_ROOT OUT_DIR   (only spm_small.*)
The second form writes llama2c_tok512.json: the ids (bos=1, eos=0) from llama2.c's own encode() in run.c, driven by
HARNESS (see Data/tokenizers/README.md), which reads one hex-encoded UTF-8 string a line and prints its ids.
"""
import glob, json, os, random, sys

LLAMA3_PATTERN = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


def llama3_specials(n_base):
    names = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
             "<|reserved_special_token_2|>", "<|reserved_special_token_3|>", "<|start_header_id|>", "<|end_header_id|>",
             "<|reserved_special_token_4|>", "<|eot_id|>"] + [f"<|reserved_special_token_{i}|>" for i in range(5, 251)]
    return {t: n_base + i for i, t in enumerate(names)}


def test_strings():
    s = [
        "", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\n ", "a", "A", "Hello world", "hello world",
        "Hello, world!", " Hello world", "Hello world ", "Hello  world", "Hello   world  ", "Hello\nworld",
        "Hello\n\nworld", "Hello \n world", "Hello\t\tworld", "Once upon a time", "Once upon a time, there was a little girl named Lily.",
        "She loved to play outside in the park.", "The quick brown fox jumps over the lazy dog.",
        "THE QUICK BROWN FOX", "I'm", "I'M", "you're", "YOU'RE", "we've", "they'll", "he'd", "it's", "It'S", "don't",
        "DON'T", "can't won't shouldn't", "'s", "'t", " 's", "rock 'n' roll", "O'Neil's", "the dog's bone",
        "1", "12", "123", "1234", "12345", "123456", "1234567", "12345678901234567890", "3.14159", "-42", "+7",
        "1,000,000", "2024-01-15", "10:30pm", "0x1F", "1e-10", "$100.00", "50%", "v1.2.3", "007",
        "def f(x):\n    return x * 2\n", "for (int i = 0; i < n; i++) { sum += a[i]; }", "if x == 1:\n\tprint('one')",
        "    indented", "\t\ttabbed", "#include <stdio.h>", "SELECT * FROM t WHERE id = 3;", "a->b", "x += 1",
        "foo_bar_baz", "camelCaseIdentifier", "snake_case_name", "https://example.com/path?q=1&r=2", "user@example.com",
        "C:\\Users\\name\\file.txt", "/usr/bin/env python3", "<html><body>Hi</body></html>", "{\"key\": [1, 2, 3]}",
        "!!!", "???", "...", "…", "—", "–", "--", "---", "***", "#!", "@#$%^&*()", "«quoted»", "“smart quotes”",
        "‘single’", "a,b;c:d", "(parenthesized)", "[bracketed]", "<angle>", "~tilde~", "`backtick`", "x|y",
        "😀", "😀😀", "Hello 😀 world", "👍🏽", "👨‍👩‍👧‍👦", "🇺🇸", "❤️", "☃", "★☆", "♥", "⚡",
        "日本語", "日本語のテキスト", "中文文本测试", "你好，世界！", "한국어 텍스트", "ひらがな カタカナ", "漢字かな交じり文",
        "مرحبا بالعالم", "العربية", "שלום עולם", "Привет, мир!", "Ελληνικά", "हिन्दी", "ไทย", "Tiếng Việt",
        "café", "naïve", "résumé", "Ångström", "Zürich", "façade", "señor", "crème brûlée", "Œuvre", "straße", "ſ",
        "e\u0301", "n\u0303", "\u00e9", "Å", "ﬁ", "Ⅻ", "²", "½", "①", "٣", "١٢٣", "१२३", "〇", "Ⅳ",
        "\u00a0", "a\u00a0b", "\u2003", "a\u2003b", "\u3000", "\u200b", "a\u200bb", "\ufeff", "\u2028", "\u0085",
        "\u000b", "\u000c", "\u001f", "\u0007", "\u00ad", "\ufffd", "\uffff", "\U0001F600\U0001F601",
        "<0xFF>", "<0x41>", "\\xff\\xfe", "<unk>", "<s>", "</s>", "<|", "|>", "<||>", "<|eot_id", "eot_id|>",
        "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
        "<|begin_of_text|>User: hi<|eot_id|>Assistant: ", "text<|eot_id|>text", "<|eot_id|><|eot_id|>",
        "<|reserved_special_token_0|>", "<|reserved_special_token_250|>", "<|reserved_special_token_251|>",
        "<|not_a_special|>", "< |eot_id| >", "<<|eot_id|>>", "<|EOT_ID|>",
    ]
    rng = random.Random(20261206)
    for n in range(1, 41):  # numbers of many digits
        s.append("".join(rng.choice("0123456789") for _ in range(n)))
    for n in range(1, 13):  # whitespace runs, alone and between words
        s.append(" " * n + "x")
        s.append("x" + " " * n + "y")
        s.append("a" + "\n" * n + "b")
    pools = [
        "abcdefghijklmnopqrstuvwxyz     ",
        "ABCdef 123 .,;:!? '\"-\n",
        "éèêëàâäôöûüçñß ",
        "日本語中文한국어 ",
        "😀👍🏽❤️🇺🇸 ab",
        " \t\n\r\u00a0\u3000x",
        "'sStTreEvV mMlLdD ",
        "0123456789 ,.",
        "(){}[]<>|&^%$#@!~`",
        "abc<|eot_id|> \n",
    ]
    for i in range(80):
        pool = pools[i % len(pools)]
        n = rng.randint(1, 40)
        s.append("".join(rng.choice(pool) for _ in range(n)))
    words = ("the of and to in is was he for it with as his on be at by had are but from or have an they which one you "
             "were her all she there would their we him been has when who will more no if out so said what up its about "
             "into than them can only other new some could time these two may then do first any my now such like our "
             "over man me even most made after also did many before must through back years where much your way well "
             "down should because each just those people Mr how too little state good very make world still own see men "
             "work long get here between both life being under never day same another know while last might us great "
             "old year off come since against go came right used take three").split()
    for i in range(30):
        n = rng.randint(3, 60)
        s.append(" ".join(rng.choice(words) for _ in range(n)) + rng.choice([".", "!", "?", "", "\n"]))
    s.append(" ".join(words) * 3)  # a few KB of text: one long input
    seen, out = set(), []
    for x in s:
        if x not in seen and "\x00" not in x:
            seen.add(x)
            out.append(x)
    return out


def llama2c(harness, tok_bin, vocab_size, out_dir):
    import subprocess
    strings = test_strings()
    stdin = "".join(x.encode("utf-8").hex() + "\n" for x in strings)
    out = subprocess.run([harness, tok_bin, vocab_size], input=stdin, capture_output=True, text=True, check=True).stdout
    lines = out.split("\n")[:len(strings)]
    assert len(lines) == len(strings)
    ids = [[int(v) for v in line.split(",")] for line in lines]
    with open(os.path.join(out_dir, "llama2c_tok512.json"), "w") as f:
        json.dump({"tool": "llama2.c run.c encode(bos=1, eos=0)", "ids": ids}, f, separators=(",", ":"))
    print("strings", len(strings), "tokens", sum(map(len, ids)))


def spm_reference(strings, corpus, out_dir):
    import sentencepiece as spm
    text_path = os.path.join(out_dir, "spm_corpus.txt")
    with open(text_path, "w", encoding="utf-8") as f:
        for x in corpus:
            for line in x.split("\n"):
                if line.strip():
                    f.write(line + "\n")
    spm.SentencePieceTrainer.train(
        input=text_path, model_prefix=os.path.join(out_dir, "spm_small"), model_type="bpe", vocab_size=800,
        byte_fallback=True, split_digits=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=True, allow_whitespace_only_pieces=True, character_coverage=0.9995, unk_id=0, bos_id=1,
        eos_id=2, pad_id=-1, user_defined_symbols=["<|user|>"], minloglevel=2)
    os.remove(text_path)
    os.remove(os.path.join(out_dir, "spm_small.vocab"))
    sp = spm.SentencePieceProcessor(model_file=os.path.join(out_dir, "spm_small.model"))
    sp_ids = [sp.encode(x) for x in strings]
    with open(os.path.join(out_dir, "spm_small.json"), "w") as f:
        json.dump({"tool": f"sentencepiece {spm.__version__}", "ids": sp_ids}, f, separators=(",", ":"))
    print("spm_small tokens", sum(map(len, sp_ids)), "pieces", sp.get_piece_size())


def corpus_of(strings, repo_root):
    corpus = list(strings)
    for p in sorted(glob.glob(os.path.join(repo_root, "docs", "*.md"))) + [os.path.join(repo_root, "README.md")]:
        with open(p, encoding="utf-8") as f:
            corpus.append(f.read())
    return corpus


def main():
    if sys.argv[1] == "--llama2c":
        return llama2c(*sys.argv[2:6])
    if sys.argv[1] == "--spm":
        strings = test_strings()
        return spm_reference(strings, corpus_of(strings, sys.argv[2]), sys.argv[3])
    model_path, repo_root, out_dir = sys.argv[1:4]
    os.makedirs(out_dir, exist_ok=True)
    strings = test_strings()
    with open(os.path.join(out_dir, "tokenizer_strings.json"), "w", encoding="utf-8") as f:
        json.dump(strings, f, ensure_ascii=True, indent=0)

    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    ranks = load_tiktoken_bpe(model_path)
    enc = tiktoken.Encoding(name="llama3", pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks,
                            special_tokens=llama3_specials(len(ranks)))
    special = [enc.encode(x, allowed_special="all") for x in strings]
    plain = [enc.encode(x, disallowed_special=()) for x in strings]
    for x, ids in zip(strings, plain):
        assert enc.decode(ids) == x, x
    with open(os.path.join(out_dir, "llama3_tiktoken.json"), "w") as f:
        json.dump({"tool": f"tiktoken {tiktoken.__version__ if hasattr(tiktoken, '__version__') else ''}".strip(),
                   "special": special, "plain": plain}, f, separators=(",", ":"))

    import tokenizers
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE(ignore_merges=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    trainer = trainers.BpeTrainer(vocab_size=1200, min_frequency=2, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    corpus = corpus_of(strings, repo_root)
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.save(os.path.join(out_dir, "bpe_small.tokenizer.json"))
    tok = Tokenizer.from_file(os.path.join(out_dir, "bpe_small.tokenizer.json"))
    ids = [tok.encode(x, add_special_tokens=False).ids for x in strings]
    with open(os.path.join(out_dir, "bpe_small.json"), "w") as f:
        json.dump({"tool": f"tokenizers {tokenizers.__version__}", "ids": ids}, f, separators=(",", ":"))
    spm_reference(strings, corpus, out_dir)
    print("strings", len(strings), "llama3 tokens", sum(map(len, special)), "bpe_small tokens", sum(map(len, ids)),
          "vocab", tok.get_vocab_size())


if __name__ == "__main__":
    main()
