// The monitoring files in grafana/: dashboards match their generator, alert rules pass
// promtool's checks and unit tests, the example Prometheus config is valid, and every
// m3u_proxy_* name they use is defined. (test/prometheus.test.ts runs them all live.)
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { dashboards, dashboardText } from '../grafana/generate/dashboards.js';
import { ALL_DEFINITIONS } from '../src/metrics/definitions.js';
import { alertExprs, dashboardExprs, GRAFANA_DIR, metricNames, RULES_FILE, signals } from './support/grafana-exprs.js';
import { promtool } from './support/prom-text.js';

describe('grafana/ and alert rules', function () {
  this.timeout(30_000);

  it('the committed dashboards are what `npm run dashboards` generates: Overview, Streams, Transcoding, Cluster', () => {
    const built = dashboards();
    expect(Object.keys(built).sort()).to.deep.equal(['cluster.json', 'overview.json', 'streams.json', 'transcoding.json']);
    for (const [file, d] of Object.entries(built)) {
      expect(readFileSync(`${GRAFANA_DIR}dashboards/${file}`, 'utf8'), `${file} is stale: run npm run dashboards`).to.equal(dashboardText(d));
    }
    const streams = built['streams.json']!;
    expect(streams.templating?.list?.map((v) => v.name)).to.include('stream_id');
  });

  it('promtool check rules accepts the alert rules, and promtool test rules passes (each alert fires where it should, silent elsewhere)', async () => {
    const check = await promtool(['check', 'rules', RULES_FILE]);
    expect(check.code, check.output).to.equal(0);
    expect(check.output).to.match(/SUCCESS: 9 rules found/);
    const test = await promtool(['test', 'rules', `${GRAFANA_DIR}alerts/m3u-proxy.rules.test.yml`]);
    expect(test.code, test.output).to.equal(0);
    expect(test.output).to.include('SUCCESS');
  });

  it('the example prometheus.yml is a valid configuration', async () => {
    const check = await promtool(['check', 'config', '--syntax-only', `${GRAFANA_DIR}prometheus.yml`]);
    expect(check.code, check.output).to.equal(0);
  });

  it('every m3u_proxy_* name in a panel or an alert is defined in src/metrics/definitions.ts', () => {
    const defined = new Set(ALL_DEFINITIONS.map((d) => d.name));
    const all = [...dashboardExprs(), ...alertExprs()];
    expect(all.length).to.be.greaterThan(30);
    const unknown = all.flatMap((e) => metricNames(e.expr).filter((n) => n.startsWith('m3u_proxy_') && !defined.has(n)).map((n) => `${e.where}: ${n}`));
    expect(unknown).to.deep.equal([]);
  });

  it('splits an alert expression into its signals', () => {
    expect(signals('sum by (i) (rate(x[5m])) > 0.05')).to.deep.equal(['sum by (i) (rate(x[5m]))']);
    expect(signals('min(a) == 0')).to.deep.equal(['min(a)']);
    expect(signals('sum(a) > 0 unless sum by (i) (rate(b{r=~"x and y"}[2m])) > 0')).to.deep.equal(['sum(a)', 'sum by (i) (rate(b{r=~"x and y"}[2m]))']);
    expect(signals('sum(a) - sum(b) > 0')).to.deep.equal(['sum(a) - sum(b)']);
  });
});
