"""Forms of the sign-in, account and user administration pages."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    EmailField,
    PasswordField,
    SelectChoice,
    SelectField,
    StringField,
    ValidationError,
)
from wtforms.validators import DataRequired, Email, EqualTo, Length

from portal.accounts import admin
from portal.accounts.credentials import MIN_PASSWORD_LENGTH
from portal.accounts.models import Role

ROLE_CHOICES = [SelectChoice(role.value, role.label) for role in Role]


class LoginForm(FlaskForm):
    """Email and password."""

    email = EmailField(
        "Email",
        validators=[DataRequired(), Length(max=254)],
        render_kw={"autocomplete": "username", "autofocus": True},
    )
    password = PasswordField(
        "Password",
        validators=[DataRequired(), Length(max=512)],
        render_kw={"autocomplete": "current-password"},
    )


class CodeForm(FlaskForm):
    """A 6-digit authenticator code, or a recovery code."""

    code = StringField(
        "Code",
        validators=[DataRequired(message="Enter the code."), Length(max=32)],
        render_kw={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True},
    )


class PasswordConfirmForm(FlaskForm):
    """The current password, asked again before a sensitive change."""

    password = PasswordField(
        "Your password",
        validators=[DataRequired(), Length(max=512)],
        render_kw={"autocomplete": "current-password"},
    )


class ChangePasswordForm(FlaskForm):
    """Current password and a new one, twice."""

    current = PasswordField(
        "Current password",
        validators=[DataRequired(), Length(max=512)],
        render_kw={"autocomplete": "current-password"},
    )
    new = PasswordField(
        "New password",
        validators=[DataRequired(), Length(min=MIN_PASSWORD_LENGTH, max=512)],
        description=f"At least {MIN_PASSWORD_LENGTH} characters.",
        render_kw={"autocomplete": "new-password"},
    )
    confirm = PasswordField(
        "New password again",
        validators=[DataRequired(), EqualTo("new", message="The two new passwords differ.")],
        render_kw={"autocomplete": "new-password"},
    )


class UserForm(FlaskForm):
    """A new staff account."""

    email = EmailField(
        "Email", validators=[DataRequired(), Email(check_deliverability=False), Length(max=254)]
    )
    name = StringField("Full name", validators=[DataRequired(), Length(max=200)])
    role = SelectField("Role", choices=ROLE_CHOICES, default=Role.AGENT.value)
    team = SelectField("Team", coerce=int)

    def validate_email(self, field: EmailField) -> None:
        if admin.email_taken(field.data or ""):
            raise ValidationError("An account with this email already exists.")


class RoleTeamForm(FlaskForm):
    """Role and team of an existing account."""

    role = SelectField("Role", choices=ROLE_CHOICES)
    team = SelectField("Team", coerce=int)


class TeamForm(FlaskForm):
    """A new team."""

    name = StringField("Team name", validators=[DataRequired(), Length(max=120)])

    def validate_name(self, field: StringField) -> None:
        if admin.find_team(field.data or ""):
            raise ValidationError("A team with this name already exists.")
