"""The codebook: projects and their typed variables, their input specs, value types, the YAML file.

``from extraction import codebook`` gives the service functions (look-ups and changes) in one
namespace, as before the stage packages existed; ``codebook.file`` (YAML), ``codebook.specs``
(validated inputs) and ``codebook.values`` (normalising typed values) are imported by name.
"""

from extraction.codebook.lookup import (
    count_projects,
    get_project,
    get_variable,
    list_projects,
    list_variables,
)
from extraction.codebook.service import (
    add_variable,
    create_project,
    delete_project,
    delete_variable,
    project_to_dict,
    update_project,
    update_variable,
    variable_history,
    variable_snapshot,
    variable_to_dict,
)

__all__ = [
    "add_variable",
    "count_projects",
    "create_project",
    "delete_project",
    "delete_variable",
    "get_project",
    "get_variable",
    "list_projects",
    "list_variables",
    "project_to_dict",
    "update_project",
    "update_variable",
    "variable_history",
    "variable_snapshot",
    "variable_to_dict",
]
