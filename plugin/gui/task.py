"""Background counting for the dock: one QgsTask counts every included layer.

The task never touches QgsProject or project layers from its thread (PyQGIS
cookbook, tasks chapter): the dock hands it plain parameters (file paths,
WKT in each raster's CRS) and gets plain data back; the dock builds layers
on the main thread.
"""
from dataclasses import dataclass, field

from qgis.core import QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from ..core import detector
from ..core.errors import Canceled, RailcarCounterError


@dataclass
class Job:
    """One raster to count."""
    layer_id: str
    name: str
    path: str
    date: str
    aoi_wkt: list = field(default_factory=list)
    tracks_wkt: list = field(default_factory=list)
    crs_wkt: str = ""              # the layer's CRS (the file may have none)


@dataclass
class RunParameters:
    """Everything a run needs, collected by the dock in one object."""
    jobs: list                     # [Job]
    sensitivity: float = 0.5
    site: str = "Railcar counts"


@dataclass
class JobOutcome:
    job: Job
    result: object = None          # detector.CountResult
    error: str = ""                # message for the analyst


class CountTask(QgsTask):
    """Counts ``params.jobs`` one after the other.

    Signals (queued to the main thread): ``layerStarted(layer_id)``,
    ``layerProgress(layer_id, percent)``, ``layerFinished(layer_id)``.
    ``outcomes`` holds one JobOutcome per finished layer, in order; layers
    counted before a Cancel keep their results.
    """
    layerStarted = pyqtSignal(str)
    layerProgress = pyqtSignal(str, float)
    layerFinished = pyqtSignal(str)

    def __init__(self, params, on_finished=None):
        super().__init__("Railcar Counter: counting %d image(s)" % len(params.jobs),
                         QgsTask.Flag.CanCancel)
        self.params = params
        self.outcomes = []
        self.canceled_by_user = False
        self._on_finished = on_finished

    def run(self):
        jobs = self.params.jobs
        n = max(1, len(jobs))
        for i, job in enumerate(jobs):
            if self.isCanceled():
                self.canceled_by_user = True
                return False
            self.layerStarted.emit(job.layer_id)

            def progress(fraction, i=i, job=job):
                fraction = min(1.0, max(0.0, float(fraction)))
                self.layerProgress.emit(job.layer_id, 100.0 * fraction)
                self.setProgress(100.0 * (i + fraction) / n)

            options = detector.CountOptions(
                sensitivity=self.params.sensitivity, aoi_wkt=list(job.aoi_wkt),
                tracks_wkt=list(job.tracks_wkt), date=job.date, source=job.name,
                crs_wkt=job.crs_wkt)
            outcome = JobOutcome(job)
            try:
                outcome.result = detector.count_railcars(job.path, options, progress,
                                                         self.isCanceled)
            except Canceled:
                self.canceled_by_user = True
                return False
            except RailcarCounterError as exc:
                outcome.error = str(exc)
            except NotImplementedError:
                outcome.error = ("The detector is not available in this version of "
                                 "the plugin. Update Railcar Counter.")
            except MemoryError:
                outcome.error = ("Not enough memory to count this image. Close other "
                                 "programs or clip the image to the yard.")
            except Exception as exc:     # a bug or an unreadable file: keep going
                outcome.error = "Could not count this image: %s" % exc
            self.outcomes.append(outcome)
            self.layerFinished.emit(job.layer_id)
            self.setProgress(100.0 * (i + 1) / n)
            if self.isCanceled():
                self.canceled_by_user = True
                return False
        return True

    def finished(self, ok):
        # Main thread: the dock builds the layers of every finished job,
        # also after a Cancel.
        if self._on_finished is not None:
            self._on_finished(self, ok)
