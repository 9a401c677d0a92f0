// hftokenize.mjs — Hugging Face's own tokenizer code for JavaScript
// (@huggingface/tokenizers, the tokenizer engine of transformers.js) on
// model directories: reads a JSON list of strings from argv[2], prints one
// JSON line per directory: {"path": ..., "tokens": [[...], ...]} (encode()
// without BOS/EOS: llama.cpp adds those when it runs) or {"path", "error"}.
import {readFileSync} from "node:fs";
import {join} from "node:path";
import {Tokenizer} from "@huggingface/tokenizers";

const texts = JSON.parse(readFileSync(process.argv[2], "utf8"));
for (const path of process.argv.slice(3)) {
    try {
        const tj = JSON.parse(readFileSync(join(path, "tokenizer.json"), "utf8"));
        const tc = JSON.parse(readFileSync(join(path, "tokenizer_config.json"), "utf8"));
        const tok = new Tokenizer(tj, tc);
        console.log(JSON.stringify({path, tokens: texts.map((t) => Array.from(tok.encode(t, {add_special_tokens: false}).ids))}));
    } catch (e) {
        console.log(JSON.stringify({path, error: String(e)}));
    }
}
