// The official `openai` npm SDK against a running gateway: chat, chat stream, responses,
// responses stream. Prints one JSON line of what it saw; exits non-zero on any failure.
// Usage: node sdk_check.mjs http://127.0.0.1:8000
import OpenAI from "openai";

const base = process.argv[2];
const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: "unused", maxRetries: 0 });
const question = [{ role: "user", content: "What is the capital of Japan?" }];

const chat = await client.chat.completions.create({
  model: "auto", messages: question, max_tokens: 16, temperature: 0,
});

let streamed = "";
let streamTtc = null;
let streamUsage = null;
const chatStream = await client.chat.completions.create({
  model: "auto", messages: question, max_tokens: 16, temperature: 0, stream: true,
  stream_options: { include_usage: true },
});
for await (const chunk of chatStream) {
  if (chunk.choices.length) streamed += chunk.choices[0].delta.content ?? "";
  if (chunk.ttc) streamTtc = chunk.ttc;
  if (chunk.usage) streamUsage = chunk.usage;
}

const response = await client.responses.create({
  model: "auto", input: "What is the capital of Japan?", max_output_tokens: 16, temperature: 0,
});

const kinds = [];
let deltas = "";
const responseStream = client.responses.stream({
  model: "auto", input: "Name a colour.", max_output_tokens: 16, temperature: 0,
});
for await (const event of responseStream) {
  kinds.push(event.type);
  if (event.type === "response.output_text.delta") deltas += event.delta;
}

console.log(JSON.stringify({
  chat: { content: chat.choices[0].message.content, usage: chat.usage, ttc: chat.ttc },
  chat_stream: { content: streamed, ttc: streamTtc, usage: streamUsage },
  response: { output_text: response.output_text, usage: response.usage, ttc: response.ttc },
  response_stream: { kinds, text: deltas },
}));
