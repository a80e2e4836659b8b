// --state-file: the sequence of the last event the sidecar printed, in
// decimal with a newline. Each save writes a new file beside it and renames
// it over the old one, so a reader, or a sidecar killed mid-save, finds the
// old sequence or the new one, never a mix. Saves do not fsync: the file
// survives the sidecar's death, but after a machine crash it may hold an
// older sequence (more repeats) or be empty, which load() refuses. The same
// rules as the Python and Go sidecars.
import { randomBytes } from "node:crypto";
import { closeSync, constants, fstatSync, openSync, readSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";

import { quote } from "./names.js";

/** The most a state file may hold: a uint64 is 20 digits, the rest is whitespace. */
export const MAX_STATE_BYTES = 64;

const UINT64_MAX = 2n ** 64n - 1n;

/** The state file cannot be used as it is; the message says why (without the path). */
export class StateFileError extends Error {}

/** The state file at `path` (one sidecar per file). */
export class StateFile {
  constructor(readonly path: string) {}

  /**
   * The recorded sequence, or undefined when the file does not exist yet.
   * Anything else that is not a sequence throws StateFileError: resuming
   * from a guess could lose events or repeat the whole log.
   */
  load(): bigint | undefined {
    let fd: number;
    try {
      // Non-blocking, so a FIFO put in the file's place cannot hang the
      // sidecar; it is refused below as not a regular file.
      fd = openSync(this.path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
    } catch (e) {
      if (errorCode(e) === "ENOENT") {
        return undefined;
      }
      throw new StateFileError(`cannot be read: ${reason(e)}`);
    }
    let data: Buffer;
    try {
      if (!fstatSync(fd).isFile()) {
        throw new StateFileError("is not a regular file");
      }
      data = Buffer.alloc(MAX_STATE_BYTES + 1);
      let length = 0;
      for (let n = -1; n !== 0 && length < data.length; length += n) {
        n = readSync(fd, data, length, data.length - length, null);
      }
      data = data.subarray(0, length);
    } catch (e) {
      throw e instanceof StateFileError ? e : new StateFileError(`cannot be read: ${reason(e)}`);
    } finally {
      closeSync(fd);
    }
    if (data.length > MAX_STATE_BYTES) {
      throw new StateFileError(`holds more than a sequence (over ${MAX_STATE_BYTES} bytes)`);
    }
    const text = data.toString("latin1").replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, "");
    if (text === "") {
      throw new StateFileError("is empty");
    }
    if (!/^[0-9]+$/.test(text) || BigInt(text) > UINT64_MAX) {
      // Quoted, since the file may hold anything.
      const shown = data.toString("utf8").replace(/^[ \t\r\n]+|[ \t\r\n]+$/g, "");
      throw new StateFileError(`holds ${quote(shown)}, not a sequence`);
    }
    return BigInt(text);
  }

  /** Throws StateFileError unless a new state can be written beside the file. */
  checkWritable(): void {
    try {
      this.write("", (temporary) => rmSync(temporary));
    } catch (e) {
      throw new StateFileError(`its directory cannot be written: ${reason(e)}`);
    }
  }

  /** Records `sequence`: written to a new file beside the state file, then renamed over it. */
  save(sequence: bigint): void {
    try {
      this.write(`${sequence}\n`, (temporary) => renameSync(temporary, this.path));
    } catch (e) {
      throw new StateFileError(`cannot record #${sequence}: ${reason(e)}`);
    }
  }

  // Writes content to a file with a fresh name, created exclusively (never
  // through a planted symlink) in the state file's directory so a rename is
  // atomic, hands it to `then`, and removes it if anything fails.
  private write(content: string, then: (temporary: string) => void): void {
    const temporary = join(dirname(this.path), `.${basename(this.path)}.${randomBytes(6).toString("hex")}.tmp`);
    try {
      writeFileSync(temporary, content, { flag: "wx", mode: 0o600 });
      then(temporary);
    } catch (e) {
      if (errorCode(e) !== "EEXIST") {
        rmSync(temporary, { force: true });
      }
      throw e;
    }
  }
}

function errorCode(e: unknown): string | undefined {
  return e instanceof Error && "code" in e && typeof e.code === "string" ? e.code : undefined;
}

// The system's reason without the path, which the caller names already
// ("ENOENT: no such file or directory, open '/x'" -> "no such file or directory").
function reason(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  return message.replace(/^[A-Z]+: /, "").replace(/, \w+ '.*'$/, "");
}
