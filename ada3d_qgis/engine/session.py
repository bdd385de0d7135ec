"""The onnxruntime side: load an Ada3D .onnx file, pick the device, run a tile.

Device choice: "cpu"; "cuda" (an error naming what is missing when CUDA cannot
really run); "auto" (CUDA only when a session really runs there, as reported by
``session.get_providers()``, otherwise CPU, with the reason). Whether CUDA can
run is found out before a CUDA session is attempted, by loading the libraries
onnxruntime's CUDA provider needs with ctypes: that names the missing piece and
keeps onnxruntime's own loader errors out of the user's log.

A CUDA session gets explicit provider options (:func:`cuda_provider_options`)
and runs each tile through IO binding (:func:`run_bound`); docs/gpu.md says why.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.metadata import INPUT_NAMES, OUTPUT_NAMES, MetadataError, ModelMetadata
from . import Ada3DError
from .shaped_sessions import ShapedSessions

DEVICES = ("auto", "cuda", "cpu")
INPUTS, OUTPUTS = INPUT_NAMES, OUTPUT_NAMES
CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"

#: Environment variable that sets the CUDA arena limit in MiB.
GPU_MEM_LIMIT_ENV = "ADA3D_GPU_MEM_LIMIT_MIB"
#: Share of the GPU's memory the arena may grow to when the variable is unset:
#: the rest is for the CUDA context, cuBLAS/cuDNN handles and whatever else
#: uses the card (the QGIS display, other jobs on a shared data-centre GPU).
GPU_MEM_FRACTION = 0.75
#: Arena limit when the GPU's memory cannot be read (MiB): fits a 6 GB card.
DEFAULT_GPU_MEM_LIMIT_MIB = 4096
#: Memory one tile of the metadata's tile size may take (MiB): the budget
#: export.py sizes that tile for (its TILE_MEMORY_BUDGET_MIB is this); a
#: window of another size scales with its area. A CUDA session runs as many
#: tiles at once as its arena limit holds, up to MAX_TILES_PER_RUN: a 256 x 256
#: tile of the shipped model is about 10 G multiply-adds, a few milliseconds on
#: a data-centre GPU, where launching its ~1250 kernels one tile at a time
#: would cost as much again.
TILE_BUDGET_MIB = 600
MAX_TILES_PER_RUN = 8
#: Most tiles a CPU session runs at once (each holds a tile's memory).
MAX_CPU_WORKERS = 4


def import_onnxruntime():
    """onnxruntime, or an error that says how to install it."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise Ada3DError(
            "onnxruntime is not installed for this QGIS; use Raster > Ada3D > "
            f"Install / repair dependencies ({exc})."
        ) from exc
    return onnxruntime


def session_options(ort, quiet: bool = True):
    """The options of every session the plugin opens."""
    so = ort.SessionOptions()
    # Warnings (e.g. about unused initialisers) mean nothing to a GIS analyst.
    so.log_severity_level = 3 if quiet else 2
    # The CPU arena keeps each tile's buffers for the next one: with the strips
    # graph that is faster and leaner than asking the system anew (docs/design.md).
    so.enable_cpu_mem_arena = True
    # The preallocated pattern of a run with dynamic shapes doubled a window's
    # peak memory for no speed (docs/design.md).
    so.enable_mem_pattern = False
    # No layout optimisations: the NCHWc reorders cost more than they save in a
    # graph of small convolutions between elementwise ops (docs/design.md).
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    return so


def _open(ort, path: Path, providers: list, so=None):
    if not path.is_file():
        raise Ada3DError(f"The model file {path} does not exist.")
    try:
        return ort.InferenceSession(
            str(path), sess_options=so or session_options(ort), providers=providers
        )
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Ada3DError(
            f"The model file {path.name} is not a readable ONNX model (corrupt, truncated or "
            f"another kind of file): {first}"
        ) from exc


def metadata_of(session, path: Path) -> ModelMetadata:
    """The Ada3D metadata of an open session, checked against its inputs/outputs."""
    props = session.get_modelmeta().custom_metadata_map
    try:
        meta = ModelMetadata.from_props(props)
    except MetadataError as exc:
        raise Ada3DError(f"The model file {path.name} is not a usable Ada3D model: {exc}.") from exc
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    if not set(INPUTS[:2]) <= set(inputs):
        raise Ada3DError(
            f"The model file {path.name} has inputs {inputs}; an Ada3D model takes "
            f"{', '.join(INPUTS)}."
        )
    if OUTPUTS[0] not in outputs:
        raise Ada3DError(
            f"The model file {path.name} has outputs {outputs}; an Ada3D model returns "
            f"{', '.join(OUTPUTS)}."
        )
    return meta


def read_metadata(path: Path) -> ModelMetadata:
    """Metadata of a model file without optimising its graph (cheap; for choosing)."""
    ort = import_onnxruntime()
    so = session_options(ort)
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return metadata_of(_open(ort, Path(path), [CPU_EP], so), Path(path))


# --------------------------------------------------------------------------- CUDA


def _cuda_major(ort) -> str | None:
    try:
        from onnxruntime.capi import build_and_package_info as info
    except ImportError:
        return None
    version = getattr(info, "cuda_version", "") or ""
    return version.split(".")[0] or None


#: The NVIDIA driver's CUDA library and onnxruntime's CUDA provider, per
#: ``platform.system()`` (no CUDA build of onnxruntime exists for macOS).
DRIVER_LIBRARY = {"Linux": "libcuda.so.1", "Windows": "nvcuda.dll"}
PROVIDER_LIBRARY = {
    "Linux": "libonnxruntime_providers_cuda.so",
    "Windows": "onnxruntime_providers_cuda.dll",
}
#: Name stems of the CUDA/cuDNN libraries that pip's nvidia-* wheels ship.
_CUDA_WHEEL_STEMS = ("cudart", "nvrtc", "nvjitlink", "cublas", "curand", "cufft", "cudnn")
#: Keeps os.add_dll_directory handles alive (the directory leaves the search
#: path when its handle is closed).
_DLL_DIRECTORIES: list = []


def required_cuda_libraries(cuda_major: str, system: str = "Linux") -> list[tuple[str, str]]:
    """(file name, what it is) of what onnxruntime-gpu's CUDA provider loads."""
    if system == "Windows":
        return [
            (f"cudart64_{cuda_major}.dll", f"the CUDA {cuda_major} runtime"),
            (f"cublasLt64_{cuda_major}.dll", "cuBLASLt"),
            (f"cublas64_{cuda_major}.dll", "cuBLAS"),
            ("curand64_10.dll", "cuRAND"),
            ("cudnn64_9.dll", "cuDNN 9"),
        ]
    return [
        (f"libcudart.so.{cuda_major}", f"the CUDA {cuda_major} runtime"),
        (f"libcublasLt.so.{cuda_major}", "cuBLASLt"),
        (f"libcublas.so.{cuda_major}", "cuBLAS"),
        ("libcurand.so.10", "cuRAND"),
        ("libcudnn.so.9", "cuDNN 9"),
    ]


def _load(name: str) -> str | None:
    """None when the library loads, else the loader's message."""
    try:
        ctypes.CDLL(name)
    except OSError as exc:
        return str(exc)
    return None


def _load_global(path: str) -> None:
    # Global symbols: cuDNN and onnxruntime's provider then find these
    # libraries by name without a search path.
    ctypes.CDLL(path, mode=getattr(ctypes, "RTLD_GLOBAL", 0))


def cuda_wheel_libraries(system: str, search_paths: Sequence[str]) -> list[Path]:
    """CUDA/cuDNN libraries of nvidia-* wheels found under ``search_paths``
    (the plugin's dependency folder is one): ``nvidia/*/lib/lib*.so.*`` on
    Linux, ``nvidia/*/bin[/x86_64]/*.dll`` on Windows."""
    patterns = ("nvidia/*/bin/*.dll", "nvidia/*/bin/*/*.dll") if system == "Windows" else (
        "nvidia/*/lib/lib*.so*",
    )
    found: list[Path] = []
    for entry in search_paths:
        root = Path(entry)
        if not (root / "nvidia").is_dir():
            continue
        for pattern in patterns:
            for path in sorted(root.glob(pattern)):
                stem = path.name.lower()
                if any(s in stem for s in _CUDA_WHEEL_STEMS) and path not in found:
                    found.append(path)
    return found


def preload_cuda_libraries(
    system: str | None = None,
    search_paths: Sequence[str] | None = None,
    load=_load_global,
    add_dll_directory=None,
) -> list[str]:
    """Load the CUDA/cuDNN libraries of nvidia-* wheels before a CUDA session
    is created (they are not on the loader's path), as onnxruntime's own
    ``preload_dlls`` does from 1.21 on but for every onnxruntime a plan
    installs. Returns the names loaded."""
    system = platform.system() if system is None else system
    paths = list(sys.path if search_paths is None else search_paths)
    libraries = cuda_wheel_libraries(system, paths)
    if system == "Windows":
        add = add_dll_directory or getattr(os, "add_dll_directory", None)
        for folder in dict.fromkeys(p.parent for p in libraries):
            if add is not None:
                with contextlib.suppress(OSError):
                    _DLL_DIRECTORIES.append(add(str(folder)))
    # Libraries depend on each other in an order the file names do not tell:
    # retry the failures until a pass loads nothing new.
    loaded: list[str] = []
    pending = libraries
    while pending:
        failed = []
        for path in pending:
            try:
                load(str(path))
            except OSError:
                failed.append(path)
            else:
                loaded.append(path.name)
        if len(failed) == len(pending):
            break
        pending = failed
    return loaded


def _gpu_count(libcuda) -> tuple[int, int]:
    """(cuInit error code, device count)."""
    err = libcuda.cuInit(0)
    if err != 0:
        return err, 0
    count = ctypes.c_int(0)
    libcuda.cuDeviceGetCount(ctypes.byref(count))
    return 0, count.value


def cuda_problem(system: str | None = None) -> str | None:
    """None when onnxruntime's CUDA provider can run here, else everything missing."""
    system = platform.system() if system is None else system
    if system not in DRIVER_LIBRARY:
        return f"onnxruntime has no CUDA support on {system or 'this system'}"
    ort = import_onnxruntime()
    if CUDA_EP not in ort.get_available_providers():
        return (
            f"this onnxruntime build ({ort.__version__}) has no CUDA support; "
            "install onnxruntime-gpu"
        )
    problems = []
    driver = DRIVER_LIBRARY[system]
    try:
        libcuda = ctypes.CDLL(driver)
    except OSError:
        problems.append(f"the NVIDIA driver is not installed ({driver} cannot be loaded)")
    else:
        err, count = _gpu_count(libcuda)
        if err or not count:
            problems.append(
                f"the NVIDIA driver finds no usable GPU (cuInit returned {err}, {count} devices)"
            )
    major = _cuda_major(ort)
    if major is None:
        return "; ".join([*problems, "this onnxruntime build does not say which CUDA it needs"])
    # Libraries installed as pip packages (nvidia-*) are found only after this.
    preload_cuda_libraries(system)
    missing = [
        f"{what} ({name})"
        for name, what in required_cuda_libraries(major, system)
        if _load(name)
    ]
    if missing:
        problems.append(
            f"onnxruntime {ort.__version__} needs CUDA {major} libraries that cannot be "
            f"loaded: {', '.join(missing)}"
        )
    if problems:
        return "; ".join(problems)
    provider_lib = Path(ort.__file__).parent / "capi" / PROVIDER_LIBRARY[system]
    if provider_lib.is_file():
        msg = _load(str(provider_lib))
        if msg:
            return f"onnxruntime's CUDA provider cannot be loaded: {msg}"
    return None


def device_total_memory(device_id: int = 0) -> int | None:
    """Bytes of memory on GPU ``device_id`` as the driver reports it, or None.

    cuDeviceTotalMem needs cuInit but no context, so this neither creates a
    context nor reserves memory (cuMemGetInfo, which gives the free memory,
    would need one).
    """
    try:
        libcuda = ctypes.CDLL(DRIVER_LIBRARY.get(platform.system(), "libcuda.so.1"))
    except OSError:
        return None
    device = ctypes.c_int(0)
    total = ctypes.c_size_t(0)
    if libcuda.cuInit(0) != 0 or libcuda.cuDeviceGet(ctypes.byref(device), device_id) != 0:
        return None
    if libcuda.cuDeviceTotalMem_v2(ctypes.byref(total), device) != 0 or not total.value:
        return None
    return int(total.value)


def gpu_mem_limit() -> tuple[int, str]:
    """(bytes, where the number comes from) for the CUDA arena limit:
    :data:`GPU_MEM_LIMIT_ENV` when set, else :data:`GPU_MEM_FRACTION` of the
    GPU's memory, else :data:`DEFAULT_GPU_MEM_LIMIT_MIB`."""
    raw = os.environ.get(GPU_MEM_LIMIT_ENV, "").strip()
    if raw:
        try:
            mib = int(raw)
        except ValueError:
            mib = 0
        if mib <= 0:
            raise Ada3DError(
                f"The environment variable {GPU_MEM_LIMIT_ENV} must be a whole number of "
                f"MiB greater than 0 (the GPU memory Ada3D may use), not {raw!r}."
            )
        return mib * 2**20, f"{mib} MiB from {GPU_MEM_LIMIT_ENV}"
    total = device_total_memory()
    if total is None:
        mib = DEFAULT_GPU_MEM_LIMIT_MIB
        return mib * 2**20, f"{mib} MiB, the default (the GPU's memory could not be read)"
    limit = int(total * GPU_MEM_FRACTION) // 2**20 * 2**20
    return limit, (
        f"{limit // 2**20} MiB, {GPU_MEM_FRACTION:.0%} of the GPU's {total // 2**20} MiB"
    )


def tiles_per_run(batch_memory: int, model_tile: int, width: int, height: int) -> int:
    """Windows of ``width`` x ``height`` PAN px that fit ``batch_memory``
    bytes, a window of the model's tile size taking :data:`TILE_BUDGET_MIB`
    (within 1 and :data:`MAX_TILES_PER_RUN`; 1 when ``batch_memory`` is 0)."""
    if batch_memory <= 0:
        return 1
    per_tile = TILE_BUDGET_MIB * 2**20 * (width * height) / (model_tile * model_tile)
    return int(max(1, min(MAX_TILES_PER_RUN, batch_memory // per_tile)))


def cuda_provider_options(mem_limit: int) -> dict[str, object]:
    """Options of onnxruntime's CUDA execution provider (names and values as
    documented for the Python API; onnxruntime turns each value into text)."""
    return {
        "device_id": 0,
        # Every tile has one shape (edge windows slide inwards, tiling.py)
        # and cuDNN's choice is cached per convolution shape: the exhaustive
        # benchmark is paid on the first tile, every later tile gets the
        # fastest algorithm.
        "cudnn_conv_algo_search": "EXHAUSTIVE",
        # The arena grows by what a tile asks for, not to the next power of
        # two, which could double the memory held for one large tile.
        "arena_extend_strategy": "kSameAsRequested",
        "gpu_mem_limit": int(mem_limit),
        # Lets the search consider algorithms that need a large workspace
        # (often the fastest), bounded by the arena limit above.
        "cudnn_conv_use_max_workspace": 1,
        # Copies and kernels on one stream: the documented safe setting.
        "do_copy_in_default_stream": True,
    }


def providers_for(device: str, mem_limit: int | None = None) -> list:
    """The ``providers`` argument of an InferenceSession on ``device``
    ("cpu" or "cuda"; CUDA keeps the CPU provider for operators it lacks)."""
    if device == "cpu":
        return [CPU_EP]
    if device != "cuda":
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    limit = DEFAULT_GPU_MEM_LIMIT_MIB * 2**20 if mem_limit is None else mem_limit
    return [(CUDA_EP, cuda_provider_options(limit)), CPU_EP]


# --------------------------------------------------------------------------- session


def run_bound(
    session, feeds: Mapping[str, np.ndarray], outputs: Sequence[str], device: str = "cuda"
) -> list[np.ndarray]:
    """``session.run(outputs, feeds)`` through IO binding: inputs placed on
    ``device`` ("cuda" or "cpu") before the run, outputs left there by the
    run and copied to the host once, after it."""
    ort = import_onnxruntime()
    binding = session.io_binding()
    # On "cpu" an OrtValue wraps the numpy buffer without copying, and the
    # binding does not keep the Python object alive: hold every value (and
    # so its array) until the run is over.
    values = []
    for name, array in feeds.items():
        value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), device, 0)
        values.append(value)
        binding.bind_ortvalue_input(name, value)
    for name in outputs:
        binding.bind_output(name, device, 0)
    session.run_with_iobinding(binding)
    result = binding.copy_outputs_to_cpu()
    del values
    return result


@dataclass
class ModelSession:
    """An open model: its metadata, the provider it really runs on, and ``run``."""

    path: Path
    session: object
    metadata: ModelMetadata
    device_note: str
    #: Where tile inputs and outputs are bound ("cuda"), or None for a plain
    #: ``session.run`` (CPU: binding would wrap the same host arrays).
    io_device: str | None = None
    #: Bytes a batch of tiles may take (the CUDA arena limit); 0: one tile
    #: per run, as on a CPU, where the model is memory-bound and a batch of N
    #: takes N times the memory for no gain.
    batch_memory: int = 0
    #: Model runs at once, each in its own thread (pipeline.fuse_in_order).
    workers: int = 1
    #: Sessions fixed to a window shape (CPU), or None to run ``session`` itself.
    shaped: ShapedSessions | None = None

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    def tiles_per_run(self, width: int, height: int) -> int:
        """Windows of ``width`` x ``height`` PAN px to run at once."""
        return tiles_per_run(self.batch_memory, self.metadata.tile_size, width, height)

    @property
    def has_context(self) -> bool:
        names = {i.name for i in self.session.get_inputs()}
        return {"context", "context_weight"} <= names and len(self.session.get_outputs()) > 1

    def run(
        self,
        ms: np.ndarray,
        pan: np.ndarray,
        context: np.ndarray | None = None,
        weight: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Fuse one tile: ``ms`` (L, h, w), ``pan`` (rh, rw), both normalised.

        ``context`` (K,) is blended in with ``weight`` (0: the tile's own pooled
        statistics). Returns the fused (L, rh, rw) and the tile's own context (K,).
        """
        fused, own = self.run_batch(ms[None], pan[None], context, weight)
        return fused[0], None if own is None else own[0]

    def run_batch(
        self,
        ms: np.ndarray,
        pan: np.ndarray,
        context: np.ndarray | None = None,
        weight: float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Fuse N tiles of one shape in one run: ``ms`` (N, L, h, w), ``pan``
        (N, rh, rw); the same ``context`` and ``weight`` for all. Returns the
        fused (N, L, rh, rw) and each tile's own context (N, K). The model
        pools per tile, so each result equals that tile's run alone."""
        n = ms.shape[0]
        feeds = {"ms": ms.astype(np.float32, copy=False),
                 "pan": pan[:, None].astype(np.float32, copy=False)}
        if not self.has_context:
            (fused,) = self._run([OUTPUTS[0]], feeds)[:1]
            self.check_outputs(ms.shape, pan.shape, fused, None)
            return fused, None
        # A band-agnostic model's context grows with the band count (issue 18).
        k = self.metadata.context_size_for(ms.shape[1])
        ctx = np.zeros(k, np.float32) if context is None else context.astype(np.float32)
        feeds["context"] = np.broadcast_to(ctx.reshape(1, k), (n, k)).copy()
        feeds["context_weight"] = np.full((n, 1), weight, np.float32)
        fused, own = self._run(list(OUTPUTS), feeds)
        self.check_outputs(ms.shape, pan.shape, fused, own)
        return fused, own

    def check_outputs(self, ms_shape, pan_shape, fused, own) -> None:
        """Refuse outputs that do not fit the tiles (N, L, h, w) and PAN
        (N, rh, rw) they came from: written anyway, they would make a
        patchwork raster."""
        n, bands = ms_shape[:2]
        expected = (n, bands, *pan_shape[-2:])
        problem = _shape_problem(fused, expected, "fused")
        if not problem and own is not None:
            k = self.metadata.context_size_for(bands)
            problem = _shape_problem(own, (n, k), "context_out")
        if problem:
            raise Ada3DError(
                f"The model {self.path.name} does not work as its Ada3D metadata say (ratio "
                f"{self.metadata.ratio}, {self.metadata.bands} bands): {problem}. Nothing was "
                "written; re-export the model with python -m model_export.export."
            )

    def _run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        try:
            if self.io_device is not None:
                return run_bound(self.session, feeds, outputs, self.io_device)
            if self.shaped is None:
                return self.session.run(outputs, feeds)
            with self.shaped.lease(feeds) as session:
                return (session or self.session).run(outputs, feeds)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidArgument/... types
            text = str(exc).strip()
            first = text.splitlines()[0] if text else type(exc).__name__
            shapes = ", ".join(f"{k} {'x'.join(map(str, v.shape))}" for k, v in feeds.items())
            raise Ada3DError(
                f"The model {self.path.name} failed on a tile ({shapes}); it does not work "
                f"as its Ada3D metadata say (onnxruntime: {first})."
            ) from exc


def _shape_problem(array, expected: tuple[int, ...], name: str) -> str | None:
    """Why ``array`` is not a float array of shape ``expected``, or None."""
    shape = tuple(getattr(array, "shape", ()))
    dtype = getattr(array, "dtype", None)
    if shape != tuple(expected):
        return (
            f"its {name} output is {' x '.join(map(str, shape)) or 'a scalar'} where the "
            f"tile needs {' x '.join(map(str, expected))}"
        )
    if dtype is None or not np.issubdtype(dtype, np.floating):
        return f"its {name} output holds {dtype} values, not floating-point numbers"
    return None


def _open_cuda(ort, path: Path, mem_limit: int) -> tuple[object | None, str]:
    """(session, "") when CUDA really runs the model, else (None, why not)."""
    try:
        session = _open(ort, path, providers_for("cuda", mem_limit))
    except Ada3DError as exc:
        # A file at fault gets its own message from the CPU reader; anything
        # else went wrong in the CUDA provider (options, memory, driver).
        read_metadata(path)
        cause = exc.__cause__ or exc
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        return None, f"onnxruntime could not start its CUDA provider ({first})"
    if session.get_providers()[0] != CUDA_EP:
        return None, "onnxruntime could not start its CUDA provider on this GPU"
    return session, ""


def open_session(path: Path, device: str = "auto") -> ModelSession:
    """Open ``path`` on ``device`` ("auto", "cuda" or "cpu")."""
    device = device.lower()
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    ort = import_onnxruntime()
    path = Path(path)
    note = "CPU as requested"
    if device != "cpu":
        problem = cuda_problem()
        if problem is None:
            limit, source = gpu_mem_limit()
            session, problem = _open_cuda(ort, path, limit)
            if session is not None:
                note = f"CUDA, memory arena limit {source}"
                return ModelSession(
                    path, session, metadata_of(session, path), note, "cuda", limit
                )
        if device == "cuda":
            raise Ada3DError(
                f"DEVICE is CUDA, but CUDA cannot run here: {problem}. Choose Auto or CPU, "
                "or install what is missing."
            )
        note = f"CPU, because CUDA cannot run here: {problem}"
    workers, threads = cpu_layout()

    def cpu_options(overrides: Mapping[str, int] | None = None):
        so = session_options(ort)
        so.intra_op_num_threads = threads
        for name, size in (overrides or {}).items():
            so.add_free_dimension_override_by_name(name, size)
        return so

    session = _open(ort, path, providers_for("cpu"), cpu_options())
    shaped = ShapedSessions(
        session.get_inputs(), lambda o: _open(ort, path, providers_for("cpu"), cpu_options(o))
    )
    return ModelSession(
        path, session, metadata_of(session, path), note, workers=workers, shaped=shaped
    )


def cpu_layout(cores: int | None = None) -> tuple[int, int]:
    """(tiles run at once, intra-op threads each) on a CPU with ``cores`` cores
    (default: those this process may use).

    One thread per tile and as many tiles as cores, up to
    :data:`MAX_CPU_WORKERS`: the graph's many small ops inside its scan gain
    little from a second thread within one run, while whole tiles run in
    parallel (onnxruntime releases the GIL); docs/speed.md measures both.
    """
    if cores is None:
        affinity = getattr(os, "sched_getaffinity", None)
        cores = len(affinity(0)) if affinity else (os.cpu_count() or 1)
    workers = max(1, min(cores, MAX_CPU_WORKERS))
    return workers, max(1, cores // workers)
