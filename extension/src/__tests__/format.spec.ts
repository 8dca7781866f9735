import { formatBytes, formatCount, formatDuration, histogramMean } from '../format';

describe('format', () => {
  it('formats bytes in binary units', () => {
    expect(formatBytes(512)).toBe('512 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(21382464)).toBe('20.4 MiB');
    expect(formatBytes(80 * 1024 ** 3)).toBe('80.0 GiB');
    expect(formatBytes(null)).toBe('?');
  });

  it('formats parameter counts', () => {
    expect(formatCount(98624)).toBe('98.6K');
    expect(formatCount(135_000_000)).toBe('135M');
    expect(formatCount(1_500_000_000)).toBe('1.5B');
    expect(formatCount(12)).toBe('12');
  });

  it('formats durations', () => {
    expect(formatDuration(3.21)).toBe('3.2s');
    expect(formatDuration(75.2)).toBe('1m 15s');
    expect(formatDuration(7300)).toBe('2h 1m');
    expect(formatDuration(undefined)).toBe('');
  });

  it('averages a batch-size histogram', () => {
    expect(histogramMean({ '4': 10, '8': 2 })).toBeCloseTo(4.667, 3);
    expect(histogramMean({})).toBe(0);
    expect(histogramMean(undefined)).toBe(0);
  });
});
