"""`ray._raylet` under kray: the names Ray programs import from Ray's private core module (for type
checks such as `isinstance(r, ObjectRefGenerator)`), re-exported from where kray keeps them.

Nothing lives here; nothing in kray imports it.
"""

from kray.core.generators import DynamicObjectRefGenerator, ObjectRefGenerator
from kray.core.refs import ObjectRef

# Ray's older name of the streaming generator.
StreamingObjectRefGenerator = ObjectRefGenerator

__all__ = ["DynamicObjectRefGenerator", "ObjectRef", "ObjectRefGenerator", "StreamingObjectRefGenerator"]
