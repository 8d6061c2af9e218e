/**
 * Roving tabindex for a list of rows (the people list): the list is one Tab stop, the row that
 * holds it has tabIndex 0 and the others -1, and the arrow keys, Home and End move it.
 */

/** The row a key moves to from `current` among `count` rows, or null when the key is not one. */
export function rovingTarget(key: string, current: number, count: number): number | null {
  if (count <= 0) return null;
  const last = count - 1;
  const from = Math.min(Math.max(current, 0), last);
  switch (key) {
    case "ArrowDown":
      return Math.min(last, from + 1);
    case "ArrowUp":
      return Math.max(0, from - 1);
    case "Home":
      return 0;
    case "End":
      return last;
    default:
      return null;
  }
}

/**
 * The id of the row that holds the Tab stop: the one last focused while it is still listed, else
 * the selected one, else the first.
 */
export function tabStopId(
  ids: readonly string[],
  focused: string | null,
  selected: string | null,
): string | null {
  if (focused !== null && ids.includes(focused)) return focused;
  if (selected !== null && ids.includes(selected)) return selected;
  return ids[0] ?? null;
}
