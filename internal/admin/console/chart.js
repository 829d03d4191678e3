// Credits per day as a small SVG bar chart, drawn without a library, with
// a text alternative.

import { formatDay, formatDayShort, formatNumber, h, svg } from './dom.js';

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

// The fewest days the large chart shows, so a token made today is one bar
// among a week, not one bar as wide as the chart.
const MIN_DAYS = 7;

/**
 * Returns the series from the day the token was made, or its first use if
 * earlier (but at least a week), so a young token's chart is not mostly
 * days before it existed.
 */
export function sinceCreated(series, createdAt) {
  if (!createdAt) {
    return series;
  }
  const first = createdAt.slice(0, 10);
  const from = series.findIndex((d) => d.day >= first || d.credits > 0 || d.requests > 0);
  const start = Math.max(0, Math.min(from < 0 ? series.length : from, series.length - MIN_DAYS));
  return series.slice(start);
}

// A round step for the value axis: 1, 2 or 5 times a power of ten.
function niceMax(max) {
  const p = 10 ** Math.floor(Math.log10(Math.max(1, max)));
  for (const m of [1, 2, 5, 10]) {
    if (m * p >= max) {
      return m * p;
    }
  }
  return 10 * p;
}

/**
 * Draws the series with axes: credits on the left (0, half and the top),
 * and dates below (the first, the middle and the last day).
 */
export function axisChart(series) {
  const W = 560;
  const H = 150;
  const left = 52;
  const right = 8;
  const top = 10;
  const bottom = 26;
  const plotW = W - left - right;
  const plotH = H - top - bottom;
  const max = niceMax(Math.max(1, ...series.map((d) => d.credits)));
  const label = describe(series);
  const root = svg('svg', { class: 'chart axis-chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label });
  root.append(svg('title', {}, label));
  // Credits are whole: no half-credit line on a chart that tops out at 1.
  for (const v of max % 2 === 0 ? [0, max / 2, max] : [0, max]) {
    const y = top + plotH - (v / max) * plotH;
    root.append(svg('line', { class: 'grid', x1: left, x2: W - right, y1: y.toFixed(1), y2: y.toFixed(1) }));
    root.append(svg('text', { class: 'tick y', x: left - 6, y: (y + 4).toFixed(1), 'text-anchor': 'end' }, formatNumber(v)));
  }
  const slot = plotW / series.length;
  const gap = Math.min(6, slot * 0.25);
  series.forEach((d, i) => {
    const hgt = d.credits === 0 ? 0 : Math.max(2, (d.credits / max) * plotH);
    root.append(svg('rect', {
      class: 'bar', x: (left + i * slot + gap / 2).toFixed(2), y: (top + plotH - hgt).toFixed(2),
      width: (slot - gap).toFixed(2), height: hgt.toFixed(2), rx: 1,
    }, svg('title', {}, `${formatDay(d.day)}: ${formatNumber(d.credits)} credits, ${formatNumber(d.requests)} requests`)));
  });
  root.append(svg('line', { class: 'axis', x1: left, x2: W - right, y1: top + plotH, y2: top + plotH }));
  const marks = [...new Set([0, Math.floor((series.length - 1) / 2), series.length - 1])];
  for (const i of marks) {
    const x = left + i * slot + slot / 2;
    const anchor = i === 0 && series.length > 1 ? 'start' : (i === series.length - 1 && series.length > 1 ? 'end' : 'middle');
    const ax = anchor === 'start' ? left + i * slot : (anchor === 'end' ? left + (i + 1) * slot : x);
    root.append(svg('text', { class: 'tick x', x: ax.toFixed(1), y: H - 8, 'text-anchor': anchor }, formatDayShort(series[i].day)));
  }
  return root;
}

/**
 * Returns the large chart, with axes, and its data as a table that can be
 * shown, for the edit form. createdAt trims the days before the token.
 */
export function chartWithTable(all, createdAt) {
  const series = sinceCreated(all, createdAt);
  const rows = series.filter((d) => d.credits > 0 || d.requests > 0);
  const table = rows.length === 0
    ? h('p', { className: 'muted' }, 'No requests in this period.')
    : h('table', { className: 'usage-table' },
      h('caption', { className: 'visually-hidden' }, 'Credits and requests per day'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Day'), h('th', { scope: 'col' }, 'Credits'), h('th', { scope: 'col' }, 'Requests'))),
      h('tbody', {}, rows.map((d) => h('tr', {}, h('td', {}, formatDay(d.day)), h('td', {}, formatNumber(d.credits)), h('td', {}, formatNumber(d.requests))))));
  return h('div', { className: 'usage-chart', 'data-days': series.length },
    axisChart(series),
    h('p', { className: 'muted' }, describe(series)),
    h('details', {}, h('summary', {}, 'Show the numbers'), table));
}
