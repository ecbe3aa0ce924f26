// `npm run dashboards`: writes grafana/dashboards/*.json from dashboards.ts (commit the result).
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dashboards, dashboardText } from './dashboards.js';

// dist/grafana/generate/ → grafana/dashboards/
const dir = fileURLToPath(new URL('../../../grafana/dashboards/', import.meta.url));
for (const [file, d] of Object.entries(dashboards())) {
  writeFileSync(`${dir}${file}`, dashboardText(d));
  process.stdout.write(`wrote grafana/dashboards/${file}\n`);
}
