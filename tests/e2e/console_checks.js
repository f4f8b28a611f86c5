// Accessibility basics of a console page, as rendered (tests/e2e/test_console_browser.py):
// every control labelled, one h1 and no skipped heading level, every state badge at
// least 4.5:1 against its colour (WCAG AA for normal text).
() => {
  const problems = [];
  for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
    if (!el.labels || el.labels.length === 0) problems.push("no label: " + el.outerHTML);
  }
  const levels = [...document.querySelectorAll("h1,h2,h3,h4")].map(h => +h.tagName[1]);
  if (levels.filter(l => l === 1).length !== 1) problems.push("h1 count: " + levels);
  levels.forEach((l, i) => { if (i && l > levels[i - 1] + 1) problems.push("skip: " + levels); });
  const lum = (rgb) => {
    const [r, g, b] = rgb.match(/\d+/g).slice(0, 3).map(v => {
      v = v / 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  for (const badge of document.querySelectorAll(".badge")) {
    const style = getComputedStyle(badge);
    const [a, b] = [lum(style.color), lum(style.backgroundColor)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    if (ratio < 4.5) problems.push(badge.textContent + " contrast " + ratio.toFixed(2));
  }
  return problems;
}
