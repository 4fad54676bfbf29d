"""Forms of the template library pages."""

from __future__ import annotations

import math

from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import (
    BooleanField,
    FloatField,
    IntegerField,
    RadioField,
    SelectChoice,
    SelectField,
    StringField,
    TextAreaField,
    ValidationError,
)
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional

from portal.library.models import DOCUMENT_TYPE_LABELS, FieldType


def finite(form: FlaskForm, field: FloatField) -> None:
    """Positions are real numbers of points (not NaN or infinity)."""
    if field.data is not None and not math.isfinite(field.data):
        raise ValidationError("Enter a number of points.")


TYPE_CHOICES = [SelectChoice(value, label) for value, label in DOCUMENT_TYPE_LABELS.items()]
FIELD_TYPE_CHOICES = [SelectChoice(t.value, t.label) for t in FieldType]


class NewTemplateForm(FlaskForm):
    """Name, type, team and where the document comes from."""

    name = StringField("Template name", validators=[DataRequired(), Length(max=200)])
    document_type = SelectField("Document type", choices=TYPE_CHOICES)
    team = SelectField("Team", coerce=int)
    source = RadioField(
        "Document",
        choices=[
            SelectChoice("pdf", "Upload a PDF"),
            SelectChoice("authored", "Write it here"),
        ],
        default="pdf",
    )
    file = FileField("PDF file", description="Up to 25 MB and 200 pages.")


class BodyForm(FlaskForm):
    """The text of an authored document and its merge fields."""

    body = TextAreaField("Document text", validators=[Length(max=100_000)])
    merge_keys = TextAreaField(
        "Merge fields",
        description="One per line: key | label | sample value, e.g. "
        "customer.name | Customer name | Jane Doe",
        validators=[Length(max=10_000)],
    )


class UploadForm(FlaskForm):
    """A replacement PDF for a draft."""

    file = FileField("New PDF file", description="Fields stay where they are.")


class AddFieldForm(FlaskForm):
    """A new field on a page (the editor also posts its position)."""

    type = SelectField("Field type", choices=FIELD_TYPE_CHOICES)
    page = IntegerField("Page", validators=[InputRequired(), NumberRange(min=1)], default=1)
    role = SelectField("Filled in by")
    x = FloatField("x", validators=[Optional(), finite])
    y = FloatField("y", validators=[Optional(), finite])
    w = FloatField("w", validators=[Optional(), finite])
    h = FloatField("h", validators=[Optional(), finite])


class PlaceForm(FlaskForm):
    """Where a field is: page and rectangle in points from the page's top-left corner."""

    page = IntegerField("Page", validators=[InputRequired(), NumberRange(min=1)])
    x = FloatField("Left (pt)", validators=[InputRequired(), finite, NumberRange(min=0)])
    y = FloatField("Top (pt)", validators=[InputRequired(), finite, NumberRange(min=0)])
    w = FloatField("Width (pt)", validators=[InputRequired(), finite, NumberRange(min=4)])
    h = FloatField("Height (pt)", validators=[InputRequired(), finite, NumberRange(min=4)])


class FieldPropertiesForm(FlaskForm):
    """Everything about a field except its place."""

    key = StringField("Key", validators=[DataRequired(), Length(max=60)])
    label = StringField("Label", validators=[Length(max=200)])
    role = SelectField("Filled in by")
    required = BooleanField("Required")
    merge_key = SelectField("Prefill from merge field")
    readonly_when_prefilled = BooleanField("Read-only when prefilled")
    options = TextAreaField("Options (one per line)", validators=[Length(max=4000)])
    pattern = StringField("Pattern (regular expression)", validators=[Length(max=200)])
    pattern_hint = StringField("Pattern described for signers", validators=[Length(max=120)])
    min = StringField("Minimum", validators=[Length(max=40)])
    max = StringField("Maximum", validators=[Length(max=40)])
    min_length = IntegerField("Minimum length", validators=[Optional(), NumberRange(min=0)])
    max_length = IntegerField("Maximum length", validators=[Optional(), NumberRange(min=1)])
    condition_field = SelectField("Show only when field")
    condition_value = StringField("has the value", validators=[Length(max=200)])


class SettingsForm(FlaskForm):
    """Workflow settings of a version."""

    reminder_every_hours = IntegerField(
        "Remind every (hours)", validators=[InputRequired(), NumberRange(1, 720)]
    )
    reminder_max = IntegerField(
        "At most (reminders)", validators=[InputRequired(), NumberRange(0, 10)]
    )
    expiry_days = IntegerField(
        "Expires after (days)", validators=[InputRequired(), NumberRange(1, 90)]
    )
    routing = SelectField(
        "Signing order",
        choices=[
            SelectChoice("sequential", "One after another (routing order)"),
            SelectChoice("parallel", "All at once"),
        ],
    )
    folder = StringField("Storage folder", validators=[DataRequired(), Length(max=120)])
    attachments = SelectField(
        "Attachments from signers",
        choices=[SelectChoice("optional", "Optional"), SelectChoice("mandatory", "Mandatory")],
    )
    default_auth = SelectField(
        "Signers prove who they are by",
        choices=[
            SelectChoice("link", "The link alone"),
            SelectChoice("email_otp", "A code sent by email"),
            SelectChoice("access_code", "An access code the agent gives by phone"),
        ],
    )


class ReviewForm(FlaskForm):
    """A reviewer's comment (required to reject)."""

    comment = TextAreaField("Comment", validators=[Length(max=4000)])


class RetireForm(FlaskForm):
    """Why a template stops being sent."""

    reason = StringField("Reason", validators=[DataRequired(), Length(max=500)])
