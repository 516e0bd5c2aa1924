// Must NOT type-check: a call_started has no transcript string, and "hangup" is no reason.
import type { CallStarted, CallTerminated } from "./events";

export const started: CallStarted = JSON.parse("{}");
export const words: string = started.transcript;
export const ended: CallTerminated["reason"] = "hangup";
