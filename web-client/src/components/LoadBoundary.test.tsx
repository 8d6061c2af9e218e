// @vitest-environment jsdom
import { cleanup, render, screen } from "@testing-library/react";
import { lazy, Suspense } from "react";
import { afterEach, expect, it, vi } from "vitest";
import { LoadBoundary } from "./LoadBoundary";

afterEach(() => {
  cleanup();
  vi.restoreAllMocks();
});

const Broken = lazy(() => Promise.reject(new Error("Failed to fetch dynamically imported module")));

it("says a part failed to load, with a way to reload, instead of blanking the page", async () => {
  vi.spyOn(console, "error").mockImplementation(() => undefined); // React reports the error
  render(
    <>
      <p>the rest of the page</p>
      <LoadBoundary>
        <Suspense fallback={null}>
          <Broken />
        </Suspense>
      </LoadBoundary>
    </>,
  );
  const alert = await screen.findByTestId("load-failed");
  expect(alert.getAttribute("role")).toBe("alert");
  expect(screen.getByRole("button", { name: "Reload the page" })).toBeTruthy();
  expect(screen.getByText("the rest of the page")).toBeTruthy();
});

it("shows the given fallback instead when there is one", async () => {
  vi.spyOn(console, "error").mockImplementation(() => undefined);
  render(
    <LoadBoundary fallback={<span>nothing here</span>}>
      <Suspense fallback={null}>
        <Broken />
      </Suspense>
    </LoadBoundary>,
  );
  expect(await screen.findByText("nothing here")).toBeTruthy();
});
