"""The model runtime: loading a Llama-architecture model with its RoPE scaling, and running it.

What the question answering above it uses: `Generator` (a model in this process: tokens in, tokens out, a KV
cache reused across questions over one document) and `ServerGenerator` (the same interface over an
OpenAI-compatible server), both built from a `GeneratorConfig` (`config`: the generator's settings and no
others; `Settings.generator_config()` makes one). Beneath them:

- `rope`: the RoPE scalings (YaRN, linear, dynamic), applied to a model's config and checked on the loaded
  rotary embedding, since transformers can ignore a scaling it does not parse;
- `decode_step`: a written-out Llama decode step over 4-bit or int8 copies of the weights, for CPUs;
- `kv_cache`: a KV cache that grows in place, in bfloat16 where the CPU computes in it;
- `perplexity`: perplexity by position, with and without a scaling (`longdoc ppl`);
- `llama_server`: llama.cpp's server (xllamacpp) started with YaRN on 127.0.0.1 (`longdoc serve`).

Nothing here knows about documents, passages or answers beyond the `ModelInfo` an answer reports.
"""
