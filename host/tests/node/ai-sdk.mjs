// Drives llmproxy the way OpenCode does: the Vercel AI SDK with the
// @ai-sdk/openai-compatible provider against /v1/chat/completions.
// Usage: PROXY_URL=http://127.0.0.1:PORT [MODEL=...] [REASONING_EFFORT=low] node ai-sdk.mjs
// Prints one JSON line with what it saw; exits non-zero on any failure.
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import { generateText, streamText, tool, stepCountIs } from "ai";
import { z } from "zod";

const provider = createOpenAICompatible({
  name: "llmproxy",
  baseURL: `${process.env.PROXY_URL}/v1`,
  apiKey: process.env.PROXY_KEY ?? "unused",
  includeUsage: true,
});
const model = provider(process.env.MODEL ?? "gpt-x");
// OpenCode's per-model `options` end up here: `reasoning_effort` in the body.
const providerOptions = process.env.REASONING_EFFORT
  ? { llmproxy: { reasoningEffort: process.env.REASONING_EFFORT } }
  : undefined;

const calls = [];
const tools = {
  get_weather: tool({
    description: "Weather by city",
    inputSchema: z.object({ city: z.string() }),
    execute: async ({ city }) => {
      calls.push(city);
      return `18C in ${city}`;
    },
  }),
};

const plain = await generateText({ model, prompt: "hi", providerOptions });

const stream = streamText({
  model,
  prompt: "weather in Paris?",
  tools,
  stopWhen: stepCountIs(3),
  providerOptions,
});
let streamed = "";
for await (const part of stream.fullStream) {
  if (part.type === "text-delta") streamed += part.text;
  if (part.type === "error") throw part.error;
}
const steps = await stream.steps;
const usage = await stream.totalUsage;

console.log(
  JSON.stringify({
    plain: plain.text,
    plainFinish: plain.finishReason,
    streamed,
    calls,
    steps: steps.map((s) => s.finishReason),
    toolCalls: steps.flatMap((s) => s.toolCalls.map((c) => [c.toolName, c.input])),
    inputTokens: usage.inputTokens,
    reasoning: steps.map((s) => s.reasoningText ?? ""),
  }),
);
