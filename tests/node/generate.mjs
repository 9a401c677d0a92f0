// generate.mjs — load GGUF files with llama.cpp (node-llama-cpp's prebuilt
// CPU build) and greedily generate from BOS. Prints one JSON line per file:
// {"path": ..., "tokens": [...]} or {"path": ..., "error": "..."}. One thread:
// the default pool oversubscribes small machines (14 s vs 0.1 s per model).
// GEN_TOKENS: how many (default 24); GEN_LORA: an adapter .gguf to apply.
import {getLlama, LlamaLogLevel} from "node-llama-cpp";

const n = Number(process.env.GEN_TOKENS || 24);
const llama = await getLlama({gpu: false, build: "never", logLevel: LlamaLogLevel.error});
for (const path of process.argv.slice(2)) {
    try {
        const model = await llama.loadModel({modelPath: path});
        // GEN_LORA: a GGUF LoRA adapter applied to every model (scale 1)
        const ctx = await model.createContext({contextSize: 128, threads: 1,
                                               ...(process.env.GEN_LORA ? {lora: process.env.GEN_LORA} : {})});
        const seq = ctx.getSequence();
        const out = [];
        for await (const t of seq.evaluate([model.tokens.bos], {temperature: 0})) {
            out.push(t);
            if (out.length >= n) break;
        }
        console.log(JSON.stringify({path, tokens: out, text: model.detokenize(out)}));
        await ctx.dispose();
        await model.dispose();
    } catch (e) {
        console.log(JSON.stringify({path, error: String(e)}));
    }
}
