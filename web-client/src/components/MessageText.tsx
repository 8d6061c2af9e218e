/**
 * A message's text with its web links clickable: built as elements from lib/links.ts (React
 * escapes the text; no HTML is ever parsed), each link opening in a new tab without giving that
 * tab a handle on this page (noopener) or this page's address (noreferrer).
 */
import Link from "@mui/material/Link";
import { Fragment, useMemo } from "react";
import { splitLinks } from "../lib/links";

export function MessageText(props: { text: string }) {
  const parts = useMemo(() => splitLinks(props.text), [props.text]);
  return (
    <>
      {parts.map((part, i) =>
        part.kind === "link" ? (
          <Link
            key={i}
            href={part.href}
            target="_blank"
            rel="noopener noreferrer"
            color="inherit"
            underline="always"
            data-testid="message-link"
          >
            {part.text}
          </Link>
        ) : (
          <Fragment key={i}>{part.text}</Fragment>
        ),
      )}
    </>
  );
}
