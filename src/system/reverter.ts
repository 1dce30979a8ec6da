/**
 * Undo steps for multi-step mutations (the incus Reverter). Register the undo right after
 * each step succeeds; on failure `revert()` runs them newest first; on success `success()`
 * drops them. Irreversible deletion goes last, after success.
 */
export class Reverter {
  private readonly steps: Array<{ label: string; undo: () => unknown }> = [];

  add(label: string, undo: () => unknown): void {
    this.steps.push({ label, undo });
  }

  success(): void {
    this.steps.length = 0;
  }

  /** Runs every undo, newest first. Undo failures are collected, never hide the original error. */
  async revert(): Promise<Error[]> {
    const failures: Error[] = [];
    while (this.steps.length > 0) {
      const step = this.steps.pop();
      if (!step) break;
      try {
        await step.undo();
      } catch (err) {
        failures.push(new Error(`undo "${step.label}" failed`, { cause: err }));
      }
    }
    return failures;
  }

  /** Runs `fn` with this reverter; reverts on any error and rethrows it. */
  async run<T>(fn: (r: Reverter) => Promise<T>): Promise<T> {
    try {
      const value = await fn(this);
      this.success();
      return value;
    } catch (err) {
      await this.revert();
      throw err;
    }
  }
}

export const withReverter = <T>(fn: (r: Reverter) => Promise<T>): Promise<T> => new Reverter().run(fn);
