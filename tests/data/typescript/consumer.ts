// The spec's EventSource example, typed with the interfaces json-schema-to-typescript
// generates from GET /v1/schemas/events.json (events.d.ts, made by the test).
import type { CallStarted, CallTerminated, SpeechFinal, CallEvent } from "./events";

const params = new URLSearchParams({
  event_types: "call_started,speech_final,call_terminated",
});
const source = new EventSource(`http://localhost:8080/v1/calls/events?${params}`);
source.addEventListener("call_started", (e: MessageEvent<string>) => {
  const data: CallStarted = JSON.parse(e.data);
  console.log(`Call started: ${data.session_id} from ${data.caller_id}`);
});
source.addEventListener("speech_final", (e: MessageEvent<string>) => {
  const data: SpeechFinal = JSON.parse(e.data);
  console.log(`[${data.session_id}] ${data.transcript} (${Math.round(data.confidence * 100)}%)`);
});
source.addEventListener("call_terminated", (e: MessageEvent<string>) => {
  const data: CallTerminated = JSON.parse(e.data);
  console.log(`Call ended: ${data.session_id} (${data.reason}, ${data.duration_seconds}s)`);
});
source.onerror = (err: Event) => {
  console.error("SSE connection error:", err);
  source.close();
};

// The union narrows on `type`, as the hub's own decoders dispatch on it.
export function describe(event: CallEvent): string {
  switch (event.type) {
    case "dtmf_received":
      return `pressed ${event.digit}`;
    case "call_terminated":
      return `ended: ${event.reason}`;
    default:
      return event.type;
  }
}
