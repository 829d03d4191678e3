// Credits per day as a small SVG bar chart, drawn without a library, with
// a text alternative.

import { formatDay, formatNumber, h, svg } from './dom.js';

/**
 * Returns the last `days` UTC days, oldest first, each with its credits
 * and requests (0 where the API has no row).
 */
export function fillDays(rows, days) {
  const byDay = new Map((rows || []).map((r) => [r.day, r]));
  const out = [];
  const today = new Date();
  for (let i = days - 1; i >= 0; i -= 1) {
    const d = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - i));
    const day = d.toISOString().slice(0, 10);
    const r = byDay.get(day);
    out.push({ day, credits: r ? r.credits : 0, requests: r ? r.requests : 0 });
  }
  return out;
}

/** Describes the series in one sentence, for the chart's text alternative. */
export function describe(series) {
  const total = series.reduce((n, d) => n + d.credits, 0);
  if (total === 0) {
    return `No credits used in the last ${series.length} days.`;
  }
  const peak = series.reduce((a, b) => (b.credits > a.credits ? b : a));
  const active = series.filter((d) => d.credits > 0).length;
  return `${formatNumber(total)} credits in the last ${series.length} days, used on ${active} of them; ` +
    `the busiest day was ${formatDay(peak.day)}, with ${formatNumber(peak.credits)}.`;
}

/**
 * Draws the series as bars. The SVG is an image whose accessible name is
 * the one-sentence description; each bar has a tooltip.
 */
export function barChart(series, { width = 150, height = 32, gap = 1 } = {}) {
  const max = Math.max(1, ...series.map((d) => d.credits));
  const bar = (width - gap * (series.length - 1)) / series.length;
  const label = describe(series);
  const root = svg('svg', { class: 'chart', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label });
  root.append(svg('title', {}, label));
  series.forEach((d, i) => {
    const x = i * (bar + gap);
    const hgt = d.credits === 0 ? 1 : Math.max(2, Math.round((d.credits / max) * (height - 2)));
    root.append(svg('rect', {
      class: d.credits === 0 ? 'bar empty' : 'bar', x: x.toFixed(2), y: height - hgt, width: bar.toFixed(2), height: hgt, rx: 1,
    }, svg('title', {}, `${formatDay(d.day)}: ${formatNumber(d.credits)} credits, ${formatNumber(d.requests)} requests`)));
  });
  return root;
}

/**
 * Returns a larger chart with its data as a table that can be shown, for
 * the edit form.
 */
export function chartWithTable(series) {
  const rows = series.filter((d) => d.credits > 0 || d.requests > 0);
  const table = rows.length === 0
    ? h('p', { className: 'muted' }, 'No requests in this period.')
    : h('table', { className: 'usage-table' },
      h('caption', { className: 'visually-hidden' }, 'Credits and requests per day'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Day'), h('th', { scope: 'col' }, 'Credits'), h('th', { scope: 'col' }, 'Requests'))),
      h('tbody', {}, rows.map((d) => h('tr', {}, h('td', {}, formatDay(d.day)), h('td', {}, formatNumber(d.credits)), h('td', {}, formatNumber(d.requests))))));
  return h('div', { className: 'usage-chart' },
    barChart(series, { width: 520, height: 96, gap: 3 }),
    h('p', { className: 'muted' }, describe(series)),
    h('details', {}, h('summary', {}, 'Show the numbers'), table));
}
