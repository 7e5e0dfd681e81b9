// The official `openai` npm SDK streaming a multi-sample policy (adaptive_bon) from a running
// gateway: chat with stream: true, the chat stream helper, and the responses stream helper.
// Prints one JSON line of what it saw, in order; exits non-zero on any failure (an SDK that
// could not parse a chunk throws).
// Usage: node stream_check.mjs http://127.0.0.1:8000
import OpenAI from "openai";

const base = process.argv[2];
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused", maxRetries: 0 });
const question = [{ role: "user", content: "What is the capital of Japan?" }];
// Gate off, 2 to 4 samples: at least one round of votes, so at least one progress event.
const ttc = { policy: "adaptive_bon", single_sample_confidence: null, min_samples: 2,
              max_samples: 4 };

const chunks = [];
const stream = await client.chat.completions.create({
  model: "auto", messages: question, max_tokens: 24, seed: 7, stream: true,
  stream_options: { include_usage: true }, ttc,
});
for await (const chunk of stream) {
  const choice = chunk.choices[0];
  chunks.push({
    choices: chunk.choices.length,
    content: choice?.delta?.content ?? null,
    finish_reason: choice?.finish_reason ?? null,
    progress: chunk.ttc?.progress ?? null,
    ttc: chunk.ttc && !chunk.ttc.progress ? chunk.ttc : null,
    usage: chunk.usage ?? null,
  });
}

// The helper accumulates chunks into a completion; a progress chunk is an empty delta.
const helper = client.chat.completions.stream({
  model: "auto", messages: question, max_tokens: 24, seed: 7, ttc,
});
let helperProgress = 0;
helper.on("chunk", (chunk) => { if (chunk.ttc?.progress) helperProgress += 1; });
const final = await helper.finalChatCompletion();

const kinds = [];
let progressEvents = 0;
let text = "";
const responses = client.responses.stream({
  model: "auto", input: "What is the capital of Japan?", max_output_tokens: 24, ttc,
});
for await (const event of responses) {
  kinds.push(event.type);
  if (event.type === "response.in_progress" && event.response.ttc?.progress) progressEvents += 1;
  if (event.type === "response.output_text.delta") text += event.delta;
}
const finalResponse = await responses.finalResponse();

console.log(JSON.stringify({
  chat_stream: chunks,
  chat_helper: { content: final.choices[0].message.content, progress: helperProgress },
  responses_stream: { kinds, progress: progressEvents, text, output_text: finalResponse.output_text },
}));
