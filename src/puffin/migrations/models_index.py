"""Import every module that defines tables, so Alembic sees the whole schema."""

from puffin.alert import models as alert_models  # noqa: F401
from puffin.audit import models as audit_models  # noqa: F401
from puffin.auth import models as auth_models  # noqa: F401
from puffin.detection import models as detection_models  # noqa: F401
from puffin.endpoint import models as endpoint_models  # noqa: F401
from puffin.intel import models as intel_models  # noqa: F401
