// The official OpenAI Node SDK's responses.create against a Radiance server: plain text, a
// function-tool round trip (both by previous_response_id and by passing the items back),
// structured output and a streamed answer. Prints one JSON line of what it saw; the checks
// live in tests/appliance/test_responses_node.py.
//
//   node responses.mjs [BASE_URL [API_KEY [MODEL]]]
//   (or RADIANCE_BASE_URL, RADIANCE_API_KEY, RADIANCE_MODEL; the model defaults to "tiny")
import OpenAI from "openai";
import { VERSION } from "openai/version";

const [baseURL, apiKey, model] = [
  process.argv[2] ?? process.env.RADIANCE_BASE_URL,
  process.argv[3] ?? process.env.RADIANCE_API_KEY,
  process.argv[4] ?? process.env.RADIANCE_MODEL ?? "tiny",
];
if (!baseURL || !apiKey) {
  console.error("usage: node responses.mjs BASE_URL API_KEY [MODEL] (or RADIANCE_BASE_URL, RADIANCE_API_KEY)");
  process.exit(2);
}
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 120_000 });

const WEATHER = {
  type: "function",
  name: "get_weather",
  description: "The weather in a city",
  parameters: {
    type: "object",
    properties: { city: { type: "string", enum: ["Paris", "Rome"] } },
    required: ["city"],
    additionalProperties: false,
  },
  strict: true,
};
const FORECAST = {
  type: "object",
  properties: {
    sunny: { type: "boolean" },
    sky: { type: "string", enum: ["clear", "cloudy", "rain"] },
  },
  required: ["sunny", "sky"],
  additionalProperties: false,
};

// The facts about one response that the Python test asserts on.
function shape(response) {
  return {
    id: response.id,
    object: response.object,
    status: response.status,
    incomplete_details: response.incomplete_details ?? null,
    model: response.model,
    output_types: response.output.map((item) => item.type),
    output_text: response.output_text,
    usage: response.usage,
    previous_response_id: response.previous_response_id ?? null,
  };
}

// The tool's local implementation; the script fails if the model's arguments do not fit it.
function getWeather(args) {
  if (!WEATHER.parameters.properties.city.enum.includes(args.city) || Object.keys(args).length !== 1) {
    throw new Error(`get_weather got arguments outside its schema: ${JSON.stringify(args)}`);
  }
  return `${args.city}: sunny, 21C`;
}

function theCall(response) {
  const calls = response.output.filter((item) => item.type === "function_call");
  if (calls.length !== 1) {
    throw new Error(`expected one function_call, got ${JSON.stringify(response.output)}`);
  }
  return calls[0];
}

async function plain() {
  const response = await client.responses.create({
    model,
    instructions: "You are terse.",
    input: "Say something.",
    max_output_tokens: 24,
  });
  return shape(response);
}

async function toolRoundTrip() {
  const question = [{ role: "user", content: "What is the weather in Paris?" }];
  const first = await client.responses.create({
    model,
    input: question,
    tools: [WEATHER],
    tool_choice: { type: "function", name: "get_weather" },
    max_output_tokens: 100,
  });
  const call = theCall(first);
  const args = JSON.parse(call.arguments);
  const result = getWeather(args);
  const output = { type: "function_call_output", call_id: call.call_id, output: result };

  // Stateful: the server remembers the question and the call. Stateless: the client sends
  // the whole conversation back and nothing is stored. The same prompt either way, decoded
  // greedily: the same answer.
  const followUp = { model, tools: [WEATHER], tool_choice: "auto", temperature: 0, max_output_tokens: 24 };
  const chained = await client.responses.create({ ...followUp, previous_response_id: first.id, input: [output] });
  const replayed = await client.responses.create({
    ...followUp,
    input: [...question, ...first.output, output],
    store: false,
  });
  let replayedStored = true;
  try {
    await client.responses.retrieve(replayed.id);
  } catch (error) {
    if (!(error instanceof OpenAI.NotFoundError)) throw error;
    replayedStored = false;
  }
  return {
    call: { name: call.name, call_id: call.call_id, arguments: args, status: call.status ?? null },
    first: shape(first),
    chained: shape(chained),
    replayed: shape(replayed),
    replayed_stored: replayedStored,
  };
}

async function structured() {
  const response = await client.responses.create({
    model,
    input: "Describe the weather in Rome.",
    text: { format: { type: "json_schema", name: "forecast", schema: FORECAST, strict: true } },
    temperature: 0,
    max_output_tokens: 100,
  });
  const value = JSON.parse(response.output_text);
  const fits =
    typeof value.sunny === "boolean" &&
    FORECAST.properties.sky.enum.includes(value.sky) &&
    Object.keys(value).sort().join(",") === "sky,sunny";
  if (!fits) throw new Error(`structured output outside its schema: ${response.output_text}`);
  return { ...shape(response), value, format: response.text?.format?.type ?? null };
}

async function streamed() {
  const stream = await client.responses.create({
    model,
    input: "Say something.",
    max_output_tokens: 24,
    stream: true,
  });
  const types = [];
  let deltas = "";
  let final = null;
  for await (const event of stream) {
    types.push(event.type);
    if (event.type === "response.output_text.delta") deltas += event.delta;
    if (["response.completed", "response.incomplete", "response.failed"].includes(event.type)) {
      final = event.response;
    }
  }
  if (final === null) throw new Error(`the stream ended without a terminal event: ${types}`);
  const text = final.output
    .filter((item) => item.type === "message")
    .flatMap((item) => item.content)
    .filter((part) => part.type === "output_text")
    .map((part) => part.text)
    .join("");
  const stored = await client.responses.retrieve(final.id);
  return {
    types,
    deltas,
    final_text: text,
    final: { id: final.id, status: final.status, usage: final.usage },
    retrieved: { id: stored.id, status: stored.status, output_text: stored.output_text },
  };
}

try {
  const summary = {
    sdk: VERSION,
    plain: await plain(),
    tool: await toolRoundTrip(),
    structured: await structured(),
    stream: await streamed(),
  };
  console.log(JSON.stringify(summary));
} catch (error) {
  const detail = error instanceof OpenAI.APIError ? ` (HTTP ${error.status}: ${JSON.stringify(error.error)})` : "";
  console.error(`${error.stack ?? error}${detail}`);
  process.exit(1);
}
