"""An upload handler that keeps files in memory only, whatever their size.

Django's default handlers spill large uploads to a temporary file; reference
images must never reach the disk, so this is the only handler configured. A
file over the cap keeps its true size but none of its bytes past the cap, and
the intake refuses it by size with a clear message.
"""

from io import BytesIO

from django.conf import settings
from django.core.files.uploadedfile import InMemoryUploadedFile
from django.core.files.uploadhandler import FileUploadHandler


class InMemoryOnlyUploadHandler(FileUploadHandler):
    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.buffer = BytesIO()
        self.received = 0

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received <= settings.FILE_UPLOAD_MAX_MEMORY_SIZE:
            self.buffer.write(raw_data)
        return None  # no later handler ever sees the bytes

    def file_complete(self, file_size):
        if self.received > settings.FILE_UPLOAD_MAX_MEMORY_SIZE:
            self.buffer = BytesIO()  # drop the partial bytes; only the size is reported
        self.buffer.seek(0)
        return InMemoryUploadedFile(
            file=self.buffer,
            field_name=self.field_name,
            name=self.file_name,
            content_type=self.content_type,
            size=self.received,
            charset=self.charset,
            content_type_extra=self.content_type_extra,
        )
