"""The console's forms: the admin's forms for each app's models, and what they share."""
