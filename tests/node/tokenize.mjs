// tokenize.mjs — llama.cpp's tokenizer (node-llama-cpp's prebuilt CPU build)
// on GGUF files: reads a JSON list of strings from argv[2], prints one JSON
// line per file: {"path": ..., "tokens": [[...], ...]} (special tokens
// parsed as special) or {"path": ..., "error": "..."}.
import {readFileSync} from "node:fs";
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

const texts = JSON.parse(readFileSync(process.argv[2], "utf8"));
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
for (const path of process.argv.slice(3)) {
    try {
        const model = await llama.loadModel({modelPath: path, vocabOnly: true});
        console.log(JSON.stringify({path, tokens: texts.map((t) => Array.from(model.tokenize(t, true)))}));
        await model.dispose();
    } catch (e) {
        console.log(JSON.stringify({path, error: String(e)}));
    }
}
