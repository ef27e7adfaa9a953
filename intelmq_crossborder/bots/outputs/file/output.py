"""Cross-border file output: IntelMQ's file output for JSON lines that also applies retractions to the file."""
import os
from pathlib import Path

from intelmq import VAR_STATE_PATH
from intelmq.lib.bot import OutputBot
from intelmq.lib.exceptions import ConfigurationError, InvalidValue

from intelmq_crossborder.core import tlp
from intelmq_crossborder.core.parameters import as_int, is_unset, optional
from intelmq_crossborder.formats import event_file as ef
from intelmq_crossborder.policy.retraction import is_retraction
from intelmq_crossborder.runtime.retraction import received_retraction

ENCODING_MODES = ("strict", "ignore", "replace", "backslashreplace", "xmlcharrefreplace", "surrogateescape")


class CrossBorderFileOutputBot(OutputBot):
    """Write events as JSON lines like IntelMQ's file output and apply retractions to the file: withdraw and relabel append a tombstone line, erase rewrites the file and its rotated copies atomically without the target's lines. Details: docs/bots/file.md."""

    file: str = f"{VAR_STATE_PATH}file-output/events.txt"
    format_filename: bool = False
    hierarchical_output: bool = False
    keep_raw_field: bool = False
    message_jsondict_as_string: bool = False
    message_with_type: bool = False
    encoding_errors_mode: str = "strict"
    fsync: bool = False
    tlp_ceiling: str = ""
    rotated_files: bool = True
    max_line_bytes: int = ef.MAX_LINE
    _is_multithreadable = False

    _out: "ef.EventFile" = None
    _files: dict = {}

    def init(self):
        problems = self._problems(self.__dict__ | {"file": self.file})
        if problems:
            raise ConfigurationError("file output", problems[0])
        self._fsync = bool(optional(self.fsync, False))
        self._format = bool(optional(self.format_filename, False))
        self._rotated = bool(optional(self.rotated_files, True))
        self._errors = optional(self.encoding_errors_mode, "strict")
        self._max_line = as_int(self.max_line_bytes, ef.MAX_LINE, "max_line_bytes")
        self._ceiling = None if is_unset(self.tlp_ceiling) else tlp.parse_level(self.tlp_ceiling,
                                                                                 "parameter tlp_ceiling")
        self._files = {}
        self.logger.info("Writing to %r%s; retractions applied to it.", self.file,
                         " (file name from each event)" if self._format else "")

    @staticmethod
    def _problems(parameters: dict) -> list:
        out = []
        if is_unset(parameters.get("file")) or not isinstance(parameters.get("file"), str):
            out.append("Parameter file (the path of the event file) is required.")
        if not is_unset(parameters.get("single_key")) and parameters.get("single_key") is not False:
            out.append("Parameter single_key is not supported: retractions need one JSON event per line (use "
                       "IntelMQ's file output for single keys).")
        if optional(parameters.get("encoding_errors_mode"), "strict") not in ENCODING_MODES:
            out.append(f"Parameter encoding_errors_mode must be one of {', '.join(ENCODING_MODES)}.")
        if not is_unset(parameters.get("tlp_ceiling")):
            try:
                tlp.parse_level(parameters.get("tlp_ceiling"), "parameter tlp_ceiling")
            except tlp.UnknownTLPError as exc:
                out.append(f"Parameter tlp_ceiling: {exc}.")
        try:
            if as_int(parameters.get("max_line_bytes"), ef.MAX_LINE, "max_line_bytes") < 1024:
                out.append("Parameter max_line_bytes must be at least 1024.")
        except ValueError as exc:
            out.append(f"Parameter max_line_bytes: {exc}.")
        return out

    def _handle(self, path) -> "ef.EventFile":
        key = os.path.abspath(path)          # one handle per file, however its name is spelt
        if key not in self._files:
            if len(self._files) >= 64:           # format_filename: bound the open handles
                for handle in self._files.values():
                    handle.close()
                self._files = {}
            self._files[key] = ef.EventFile(key, fsync=self._fsync)
        handle = self._files[key]
        handle.reopen_if_moved()
        return handle

    def _line(self, event) -> bytes:
        text = self.export_event(event, return_type=str)
        try:
            return text.encode("utf-8", errors=self._errors)
        except UnicodeEncodeError as exc:
            raise InvalidValue("message", text[max(0, exc.start - 20):exc.end + 20],
                               reason="not encodable as UTF-8 (encoding_errors_mode strict); not written") from None

    def process(self):
        event = self.receive_message()
        flat = event.to_dict(hierarchical=False)
        if is_retraction(flat):
            self._retract(event, flat)
        else:
            if self._format:
                try:
                    path = ef.format_name(self.file, flat)
                except ef.FileNameError as exc:
                    raise InvalidValue("file", self.file, reason=f"{exc}; not written") from None
            else:
                path = self.file
            self._handle(path).append(self._line(event))
        self.acknowledge_message()

    def _targets(self) -> list:
        if self._format:
            paths = ef.pattern_glob(self.file)
        else:
            paths = [Path(self.file)]
        out, packed = [], []
        for path in paths:
            out.append(path)
            if self._rotated:
                plain, compressed = ef.rotated(path)
                out += plain
                packed += compressed
        return list(dict.fromkeys(out)), list(dict.fromkeys(packed))

    def _retract(self, event, flat: dict):
        msg = received_retraction(flat, "the retraction is not applied")
        line = self._line(event)
        if msg.is_confirmation:
            if self._format:
                self.logger.info("Confirmation of retraction %s by %s: no file to write it to (format_filename).",
                                 msg.id, msg.confirmed_by)
            else:
                self._handle(self.file).append(line)
                self.logger.info("Confirmation of retraction %s by %s written.", msg.id, msg.confirmed_by)
            return
        removing = msg.action == "erase" or (msg.action == "relabel" and self._ceiling is not None)
        if removing or self._format:
            paths, packed = self._targets()
        else:
            paths, packed = [], []            # a tombstone only: no need to read the file
        held_in, removed, unreadable = [], 0, 0
        for path in paths:
            self._handle(path).close()            # a rewrite replaces the file: append to the new one
            try:
                done = ef.purge(path, [msg], ceiling=self._ceiling, max_line=self._max_line, fsync=True)
            except OSError as exc:
                raise OSError(f"retraction {msg.id}: {exc}") from None      # retried, then dumped
            if done.held[msg.id] or done.total_removed:
                held_in.append(path)
            removed += done.total_removed
            unreadable += done.unreadable
            for problem in done.problems[:3]:
                self.logger.warning("Retraction %s: %s.", msg.id, problem.rstrip("."))
        if self._format:
            for path in held_in:
                self._handle(path).append(line)
            where = ", ".join(map(str, held_in)) or "no file (not held here)"
        else:
            self._handle(self.file).append(line)
            where = self.file
        if packed:
            self.logger.warning("Retraction %s: %d compressed rotated file(s) not reached (%s); apply it there with "
                                "intelmq-crossborder retraction purge after decompressing.", msg.id, len(packed),
                                ", ".join(p.name for p in packed[:5]))
        self.logger.info("Retraction %s (%s of %s): %d line(s) removed from %d file(s); tombstone written to %s; "
                         "%d unreadable line(s) kept as they are.", msg.id, msg.action, msg.target, removed,
                         len(paths), where, unreadable)

    def shutdown(self):
        for handle in self._files.values():
            handle.close()

    @staticmethod
    def check(parameters: dict):
        results = [["error", p] for p in CrossBorderFileOutputBot._problems(parameters)]
        path = parameters.get("file")
        if isinstance(path, str) and path and "{" not in os.path.dirname(path):
            folder = os.path.dirname(path) or "."
            if os.path.isdir(folder) and not os.access(folder, os.W_OK):
                results.append(["error", f"Folder {folder!r} of parameter file is not writable."])
        return results or None


BOT = CrossBorderFileOutputBot
