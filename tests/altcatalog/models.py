import uuid

from django.db import models


class Article(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    code = models.CharField(max_length=80, unique=True)
    label = models.CharField(max_length=300)
    blurb = models.TextField(blank=True, default="")
    section = models.CharField(max_length=200, blank=True, default="")
    maker = models.CharField(max_length=200, blank=True, default="")
    cost = models.FloatField(null=True, blank=True)
    available = models.BooleanField(default=True)

    def __str__(self):
        return self.label
