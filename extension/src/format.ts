/** Human-readable numbers for the sidebar and the pipeline view. */

/** 1536 -> "1.5 KiB"; null/undefined -> "?". */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !isFinite(bytes)) {
    return '?';
  }
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** 135_000_000 -> "135M"; 4_200 -> "4.2K". */
export function formatCount(n: number | null | undefined): string {
  if (n === null || n === undefined || !isFinite(n)) {
    return '?';
  }
  const steps: [number, string][] = [
    [1e9, 'B'],
    [1e6, 'M'],
    [1e3, 'K']
  ];
  for (const [size, suffix] of steps) {
    if (Math.abs(n) >= size) {
      const scaled = n / size;
      return `${scaled >= 100 ? scaled.toFixed(0) : scaled.toFixed(1).replace(/\.0$/, '')}${suffix}`;
    }
  }
  return `${n}`;
}

/** 75.2 -> "1m 15s"; 3.21 -> "3.2s". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) {
    return '';
  }
  if (seconds < 60) {
    return `${seconds.toFixed(1)}s`;
  }
  const minutes = Math.floor(seconds / 60);
  const rest = Math.round(seconds - minutes * 60);
  if (minutes < 60) {
    return `${minutes}m ${rest}s`;
  }
  return `${Math.floor(minutes / 60)}h ${minutes % 60}m`;
}

/** Mean of a histogram {"4": 10, "8": 2} -> 4.7 (0 when empty). */
export function histogramMean(hist: { [value: string]: number } | undefined): number {
  if (!hist) {
    return 0;
  }
  let total = 0;
  let count = 0;
  for (const [value, n] of Object.entries(hist)) {
    total += Number(value) * n;
    count += n;
  }
  return count === 0 ? 0 : total / count;
}
