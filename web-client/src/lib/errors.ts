import type { ApiError } from "../store/chat";

/** A refusal in words for people; never a raw code. */
export function describeError(error: ApiError): string {
  switch (error.code) {
    case "RATE_LIMITED":
    case "RESOURCE_EXHAUSTED": {
      const seconds = Math.max(1, Math.ceil(error.retryAfterMs / 1000));
      return error.retryAfterMs > 0
        ? `Slow down: try again in ${seconds} s.`
        : "Slow down: try again in a moment.";
    }
    case "OUT_OF_RANGE":
      return "That message is too long.";
    case "INVALID_ARGUMENT":
      if (error.field.endsWith("text")) return "That message is empty or too long.";
      return error.message ? `The server refused it: ${error.message}` : "The server refused it.";
    case "NOT_FOUND":
      return "That person is not known to the server.";
    case "UNAUTHENTICATED":
    case "PERMISSION_DENIED":
      return "Your session expired; reconnecting as a new user.";
    case "UNAVAILABLE":
    case "UNKNOWN":
    case "DEADLINE_EXCEEDED":
    case "CANCELED":
      return "The server cannot be reached right now.";
    default:
      return error.message ? `Something went wrong: ${error.message}` : "Something went wrong.";
  }
}
