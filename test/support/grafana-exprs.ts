// The PromQL of the committed Grafana dashboards and Prometheus alert rules, as the tests
// run it: Grafana's variables replaced by what a user would pick (every stream).
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';

export const GRAFANA_DIR = fileURLToPath(new URL('../../../grafana/', import.meta.url));
export const RULES_FILE = `${GRAFANA_DIR}alerts/m3u-proxy.rules.yml`;

export interface Expr {
  where: string;
  expr: string;
}

interface PanelJson {
  title?: string;
  targets?: Array<{ expr?: string }>;
  panels?: PanelJson[];
}

/** Every panel target of every dashboard file, `$__rate_interval` as `window`. */
export function dashboardExprs(window = '30s'): Expr[] {
  const out: Expr[] = [];
  const dir = `${GRAFANA_DIR}dashboards/`;
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.json'))) {
    const d = JSON.parse(readFileSync(`${dir}${file}`, 'utf8')) as { panels: PanelJson[] };
    const walk = (panels: PanelJson[]): void => {
      for (const p of panels) {
        for (const t of p.targets ?? []) {
          if (!t.expr) continue;
          const expr = t.expr.replaceAll('$__rate_interval', window).replaceAll('$stream_id', '.+');
          out.push({ where: `${file} / ${p.title}`, expr });
        }
        walk(p.panels ?? []);
      }
    };
    walk(d.panels);
  }
  return out;
}

/** Every alert rule's expression. */
export function alertExprs(): Expr[] {
  const doc = parse(readFileSync(RULES_FILE, 'utf8')) as { groups: Array<{ rules: Array<{ alert: string; expr: string }> }> };
  return doc.groups.flatMap((g) => g.rules.map((r) => ({ where: `alert ${r.alert}`, expr: r.expr })));
}

/**
 * The signals of an alert expression: its operands at the top level of `and`/`or`/`unless`,
 * each without its final comparison against a number (`x > 0.05` → `x`). A signal returns
 * series whenever the metrics exist; the comparison decides when it fires (promtool tests).
 */
export function signals(expr: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < expr.length; i++) {
    const c = expr[i];
    if (c === '(' || c === '{' || c === '[') depth++;
    else if (c === ')' || c === '}' || c === ']') depth--;
    else if (depth === 0) {
      const m = /^\s(and|or|unless)\s/.exec(expr.slice(i));
      if (m) {
        parts.push(expr.slice(start, i));
        i += m[0].length - 1;
        start = i + 1;
      }
    }
  }
  parts.push(expr.slice(start));
  return parts.map((p) => p.trim().replace(/\s*(==|!=|>=|<=|>|<)\s*-?[0-9.e]+$/, ''));
}

/** Metric names an expression refers to (histogram series folded into their family). */
export function metricNames(expr: string): string[] {
  const names = expr.match(/\b(m3u_proxy|process|nodejs)_[a-z0-9_]+\b/g) ?? [];
  return [...new Set(names.map((n) => n.replace(/_(bucket|sum|count)$/, '')))];
}
