//! Recipes: named, stored scripts with a queue and default options, and starting one as a job.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use jiff::Timestamp;
use proctor_job::{Job, JobFormat, Name};
use proctor_store::{Recipe, Role};

use super::convert::IntoView;
use super::jobs::{created, store_job, Queues};
use super::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use proctor_api::{ErrorBody, JobView, NewRecipe, RecipeView, StartRecipe};

/// Stores a recipe, replacing one of the same name (jobs already started keep the script they started with).
#[utoipa::path(
    put,
    path = "/api/v1/recipes/{name}",
    params(("name" = String, Path, description = "The recipe name")),
    request_body = NewRecipe,
    responses(
        (status = 200, description = "The stored recipe", body = RecipeView),
        (status = 400, description = "A name or queue with whitespace, or empty", body = ErrorBody),
    ),
    tag = "recipes"
)]
pub(crate) async fn put_recipe(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(request): Json<NewRecipe>,
) -> Result<Json<RecipeView>, ApiError> {
    caller.require(&[Role::User])?;
    checked_name("recipe name", &name)?;
    checked_name("queue", &request.queue)?;
    let recipe = Recipe {
        name,
        script: request.script,
        default_options: request.options,
        queue: request.queue,
    };
    let stored = recipe.clone();
    state
        .store_call(move |store| store.put_recipe(&stored, Timestamp::now()))
        .await?;
    Ok(Json(recipe.into_view()))
}

/// Every recipe, by name.
#[utoipa::path(
    get,
    path = "/api/v1/recipes",
    responses((status = 200, description = "The recipes", body = Vec<RecipeView>)),
    tag = "recipes"
)]
pub(crate) async fn list_recipes(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<RecipeView>>, ApiError> {
    caller.require(&[Role::User, Role::Agent])?;
    let recipes = state.store_call(|store| store.recipes()).await?;
    Ok(Json(recipes.into_iter().map(IntoView::into_view).collect()))
}

/// One recipe.
#[utoipa::path(
    get,
    path = "/api/v1/recipes/{name}",
    params(("name" = String, Path, description = "The recipe name")),
    responses(
        (status = 200, description = "The recipe", body = RecipeView),
        (status = 404, description = "No such recipe", body = ErrorBody),
    ),
    tag = "recipes"
)]
pub(crate) async fn get_recipe(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<RecipeView>, ApiError> {
    caller.require(&[Role::User, Role::Agent])?;
    let recipe = state.store_call(move |store| store.recipe(&name)).await?;
    Ok(Json(recipe.into_view()))
}

/// Removes a recipe (jobs already started from it are unaffected).
#[utoipa::path(
    delete,
    path = "/api/v1/recipes/{name}",
    params(("name" = String, Path, description = "The recipe name")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "No such recipe", body = ErrorBody),
    ),
    tag = "recipes"
)]
pub(crate) async fn remove_recipe(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require(&[Role::User])?;
    state
        .store_call(move |store| store.remove_recipe(&name))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Makes a job of a recipe on the recipe's queue: its options are the recipe's defaults overridden by the start's,
/// and the recipe's script is copied with it (the agent runs it as the test phase).
#[utoipa::path(
    post,
    path = "/api/v1/recipes/{name}/start",
    params(("name" = String, Path, description = "The recipe name")),
    request_body = StartRecipe,
    responses(
        (status = 201, description = "Queued", body = JobView),
        (status = 404, description = "No such recipe", body = ErrorBody),
    ),
    tag = "recipes"
)]
pub(crate) async fn start_recipe(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(start): Json<StartRecipe>,
) -> Result<Response, ApiError> {
    Ok(created(recipe_job(&state, &caller, name, start).await?))
}

/// What [`start_recipe`] does before answering: the queued job.
pub(crate) async fn recipe_job(
    state: &AppState,
    caller: &Caller,
    name: String,
    start: StartRecipe,
) -> Result<proctor_store::Job, ApiError> {
    caller.require(&[Role::User])?;
    let recipe = state.store_call(move |store| store.recipe(&name)).await?;
    let mut options = recipe.default_options.clone();
    options.extend(start.options);
    // Written as a job document and read back like a submitted one, so a recipe job is an ordinary, valid job.
    let document = serde_json::json!({
        "job_queue": recipe.queue,
        "name": recipe.name,
        "recipe": recipe.name,
        "options": options,
    });
    let job = Job::parse(&document.to_string(), JobFormat::Json)?;
    store_job(state, caller, &job, Some(recipe.script), Queues::Any).await
}

/// Refuses a name the job definition would not accept (empty, or with whitespace).
fn checked_name(what: &str, name: &str) -> Result<(), ApiError> {
    Name::new(name).map(drop).map_err(|reason| {
        ApiError::BadRequest(format!("the {what} {name:?} is not valid: {reason}"))
    })
}
